package io.dynadax;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The README's Java example compiles against this jar's API and runs as it says. */
class ReadmeExampleTest {
    @Test
    void theReadmesJavaExampleCompilesAndRuns(@TempDir Path tmp) throws Exception {
        String readme = Files.readString(Path.of("..", "README.md"));
        Matcher m = Pattern.compile("```java\n(.*?)```", Pattern.DOTALL).matcher(readme);
        assertTrue(m.find(), "README.md has a ```java example");
        StringBuilder imports = new StringBuilder("import java.nio.file.*;\nimport java.util.*;\n");
        StringBuilder body = new StringBuilder();
        for (String line : m.group(1).split("\n")) {
            (line.startsWith("import ") ? imports : body).append(line).append('\n');
        }
        // The example's /data paths, in the test's own directory.
        Files.createDirectories(tmp.resolve("data/wal"));
        Files.write(tmp.resolve("data/f"), new byte[4096]);
        String code = body.toString().replace("\"/data", "\"" + tmp.resolve("data"));
        Path src = Files.createDirectories(tmp.resolve("src")).resolve("Example.java");
        Files.writeString(src, imports + "public class Example {\n public static void main(String[] a) throws Exception {\n"
                + code + "\n}\n}\n");
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = javac.run(null, null, err, "-cp", System.getProperty("java.class.path"), "-d",
                tmp.resolve("classes").toString(), src.toString());
        assertEquals(0, rc, "the README's example does not compile:\n" + err);

        PrintStream out = System.out;
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        try (URLClassLoader cl = new URLClassLoader(new URL[] {tmp.resolve("classes").toUri().toURL()},
                getClass().getClassLoader())) {
            Method main = cl.loadClass("Example").getMethod("main", String[].class);
            System.setOut(new PrintStream(printed, true, StandardCharsets.UTF_8));
            main.invoke(null, (Object) new String[0]);
        } finally {
            System.setOut(out);
        }
        assertTrue(printed.toString(StandardCharsets.UTF_8).contains("lsn=0, 5 bytes"), printed.toString());
        try (DaxFile f = DaxFile.open(tmp.resolve("data/f"))) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8);
            f.read(b, 0);
            assertEquals(42L, b.getLong(0), "the example's store through the mapping reached the file");
        }
        assertEquals(Mode.CACHED, Dax.stat(tmp.resolve("data/wal")).physical());
    }
}
