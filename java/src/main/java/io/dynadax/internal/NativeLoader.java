package io.dynadax.internal;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Locale;

/**
 * Loads {@code libdynadax_jni.so} once: the file named by the system property
 * {@value #PROPERTY} if it is set, else the copy bundled in the jar as the resource
 * {@value #RESOURCE}, extracted to a private temporary directory.
 */
final class NativeLoader {
    /** System property naming a library file to load instead of the bundled one. */
    static final String PROPERTY = "dynadax.library.path";

    /** Where the jar carries the library. */
    static final String RESOURCE = "/native/linux-x86_64/libdynadax_jni.so";

    private static boolean loaded;

    private NativeLoader() {}

    static synchronized void load() {
        if (loaded) {
            return;
        }
        String os = System.getProperty("os.name", "?");
        String arch = System.getProperty("os.arch", "?");
        // dynadax is about Linux's per-file DAX: no other kernel has the interfaces.
        if (!os.toLowerCase(Locale.ROOT).startsWith("linux")) {
            throw new UnsatisfiedLinkError("dynadax: unsupported platform " + os + "/" + arch
                    + ": the native library exists for Linux only (bundled for linux-x86_64)");
        }
        String file = System.getProperty(PROPERTY);
        if (file != null && !file.isEmpty()) {
            loadFile(Path.of(file).toAbsolutePath(), "the file named by -D" + PROPERTY);
        } else {
            if (!arch.equals("amd64") && !arch.equals("x86_64")) {
                throw new UnsatisfiedLinkError("dynadax: the jar bundles the native library for linux-x86_64 only, "
                        + "not linux/" + arch + "; build crates/dynadax-jni for it and set -D" + PROPERTY
                        + "=/path/to/libdynadax_jni.so");
            }
            loadBundled();
        }
        loaded = true;
    }

    private static void loadFile(Path file, String what) {
        try {
            System.load(file.toString());
        } catch (UnsatisfiedLinkError e) {
            UnsatisfiedLinkError u = new UnsatisfiedLinkError(
                    "dynadax: cannot load " + file + " (" + what + "): " + e.getMessage());
            u.initCause(e);
            throw u;
        }
    }

    private static void loadBundled() {
        Path dir = null;
        Path lib = null;
        try (InputStream in = NativeLoader.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new UnsatisfiedLinkError("dynadax: no native library: -D" + PROPERTY
                        + " is not set and the class path has no resource " + RESOURCE
                        + " (a jar built by scripts/java-build carries it)");
            }
            // A directory only this user can enter, so no one can swap the file between
            // the copy and the load.
            dir = Files.createTempDirectory("dynadax-jni-",
                    PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            lib = dir.resolve("libdynadax_jni.so");
            Files.copy(in, lib, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            deleteQuietly(lib, dir);
            UnsatisfiedLinkError u = new UnsatisfiedLinkError("dynadax: cannot extract the bundled native library "
                    + RESOURCE + " to " + (lib != null ? lib : "a temporary directory") + ": " + e);
            u.initCause(e);
            throw u;
        }
        try {
            loadFile(lib, "extracted from the resource " + RESOURCE);
        } finally {
            // Once loaded, the mapped library no longer needs its file: removing it now
            // also leaves nothing behind when the JVM is killed.
            deleteQuietly(lib, dir);
        }
    }

    private static void deleteQuietly(Path lib, Path dir) {
        for (Path p : new Path[] {lib, dir}) {
            if (p == null) {
                continue;
            }
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                p.toFile().deleteOnExit();
            }
        }
    }
}
