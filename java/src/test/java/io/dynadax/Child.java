package io.dynadax;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Starts a second JVM running a main class of the test sources. */
public final class Child {
    private Child() {}

    /**
     * The command line of a JVM like this one (same java, class path and library path)
     * running {@code main} with {@code args}.
     */
    public static List<String> command(Class<?> main, String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse(
                Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        // Small and quick to start: the children only call into the library.
        cmd.add("-Xshare:auto");
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.add("-XX:+UseSerialGC");
        cmd.add("-Xmx64m");
        String lib = System.getProperty("dynadax.library.path");
        if (lib != null && !lib.isEmpty()) {
            cmd.add("-Ddynadax.library.path=" + lib);
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(main.getName());
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** Starts it, stderr inherited (so a child's failure shows in the test output). */
    public static Process start(Class<?> main, String... args) throws IOException {
        return new ProcessBuilder(command(main, args)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }
}
