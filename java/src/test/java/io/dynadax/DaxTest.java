package io.dynadax;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dynadax.internal.Native;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Probe, stat and setMode of paths; the native library's loading. */
class DaxTest {
    static final Set<String> BACKINGS = Set.of("kernel-dax", "emulated", "page-cache", "dram-cache");

    @TempDir
    Path tmp;

    @Test
    void versionIsTheCrates() {
        assertTrue(Native.version().matches("\\d+\\.\\d+\\.\\d+.*"), Native.version());
        assertEquals(Native.version(), Dax.nativeVersion());
    }

    @Test
    void probeOfATempDirectory() throws IOException {
        Probe p = Dax.probe(tmp);
        assertTrue(p.exists());
        assertNotNull(p.fsType());
        assertFalse(p.fsType().isEmpty());
        assertFalse(p.reason().isEmpty());
        assertFalse(p.persistence().isEmpty());
        assertTrue(Path.of(p.mountPoint()).isAbsolute(), p.mountPoint());
        assertTrue(tmp.toRealPath().startsWith(Path.of(p.mountPoint())), p + " for " + tmp);
        assertTrue(Set.of("clwb", "clflushopt", "clflush").contains(p.flushInstruction()), p.flushInstruction());
        assertNotNull(p.physical());
        // A directory has no effective mode of its own.
        assertTrue(p.toString().contains("fsType=" + p.fsType()), p.toString());
        // mapSync without dax is impossible: MAP_SYNC needs a DAX file.
        assertTrue(!p.mapSync() || p.dax(), p.toString());
    }

    @Test
    void probeOfDevShmIsTmpfsWithoutKernelDax() throws IOException {
        Probe p = Dax.probe(Path.of("/dev/shm"));
        assertTrue(p.exists());
        assertEquals("tmpfs", p.fsType());
        assertFalse(p.dax(), p.toString());
        assertFalse(p.mapSync(), p.toString());
        assertEquals("/dev/shm", p.mountPoint());
    }

    @Test
    void probeOfAMissingPathChangesNothing() throws IOException {
        Path missing = tmp.resolve("not-there/deeper");
        Probe p = Dax.probe(missing);
        assertFalse(p.exists());
        // The modes a file created there would have, as its nearest directory gives them.
        assertEquals(Dax.stat(tmp).physical(), p.physical());
        assertNotNull(p.effective());
        assertFalse(Files.exists(missing));
        assertFalse(Files.exists(missing.getParent()));
    }

    @Test
    void statOfAFileAndADirectory() throws IOException {
        Path f = tmp.resolve("plain");
        Files.write(f, new byte[100]);
        Status s = Dax.stat(f);
        assertEquals(f, s.path());
        assertFalse(s.isDirectory());
        assertNotNull(s.physical());
        assertNotNull(s.effective());
        assertTrue(BACKINGS.contains(s.backing()), s.backing());
        assertNotNull(s.persistence());
        assertEquals(0, s.liveMappings());
        assertTrue(Set.of("inode", "always", "never").contains(s.policy()), s.policy());
        assertFalse(s.reason().isEmpty());
        assertTrue(s.toString().contains(f.toString()));

        Status d = Dax.stat(tmp);
        assertTrue(d.isDirectory());
        assertNotNull(d.physical());
        assertNull(d.effective());
        assertNull(d.backing());
        assertNull(d.persistence());
    }

    @Test
    void statOfAMissingFileIsNoSuchFile() {
        Path missing = tmp.resolve("missing");
        NoSuchFileException e = assertThrows(NoSuchFileException.class, () -> Dax.stat(missing));
        assertTrue(e.getMessage().contains("missing"), e.getMessage());
        assertEquals(missing.toString(), e.getFile());
    }

    @Test
    void aNewFileInheritsItsDirectorysMode() throws IOException {
        Path d = Files.createDirectory(tmp.resolve("d"));
        for (Mode m : List.of(Mode.DIRECT, Mode.CACHED, Mode.DIRECT)) {
            Status ds = Dax.setMode(d, m);
            assertTrue(ds.isDirectory());
            assertEquals(m, ds.physical());
            assertEquals(m, Dax.stat(d).physical());
            Path f = d.resolve("child-" + m + "-" + System.nanoTime());
            try (DaxFile file = DaxFile.create(f)) {
                assertEquals(m, file.status().physical(), "created in a " + m + " directory");
            }
            assertEquals(m, Dax.stat(f).physical());
            // Where the file system can do no DAX, direct is emulated, never dropped.
            assertEquals(m, Dax.stat(f).effective(), Dax.stat(f).toString());
        }
    }

    @Test
    void setModeOfAFileSwitchesAndReports() throws IOException {
        Path f = tmp.resolve("f");
        Files.write(f, "hello".getBytes(StandardCharsets.UTF_8));
        Status s = Dax.setMode(f, Mode.DIRECT);
        assertEquals(Mode.DIRECT, s.physical());
        assertEquals(Mode.DIRECT, s.effective());
        assertEquals(f, s.path());
        s = Dax.setMode(f, Mode.CACHED, java.time.Duration.ofSeconds(1));
        assertEquals(Mode.CACHED, s.physical());
        assertEquals(Mode.CACHED, Dax.stat(f).effective());
        assertEquals("hello", Files.readString(f), "a switch keeps the bytes");
    }

    @Test
    void setModeOfAMissingPathIsNoSuchFile() {
        assertThrows(NoSuchFileException.class, () -> Dax.setMode(tmp.resolve("nope"), Mode.DIRECT));
    }

    @Test
    void argumentsAreChecked() {
        assertThrows(NullPointerException.class, () -> Dax.stat(null));
        assertThrows(NullPointerException.class, () -> Dax.setMode(tmp, null));
        assertThrows(IllegalArgumentException.class,
                () -> Dax.setMode(tmp, Mode.DIRECT, java.time.Duration.ofSeconds(-1)));
    }

    /** A child JVM pointed at a file that is no library fails with a message naming it. */
    @Test
    void aBadLibraryPathIsAClearUnsatisfiedLinkError() throws Exception {
        Path bogus = tmp.resolve("libnot-a-library.so");
        Files.write(bogus, new byte[] {1, 2, 3});
        List<String> cmd = Child.command(LoaderChild.class);
        cmd.removeIf(a -> a.startsWith("-Ddynadax.library.path="));
        cmd.add(1, "-Ddynadax.library.path=" + bogus);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            out = r.lines().collect(Collectors.joining("\n"));
        }
        assertEquals(0, p.waitFor(), out);
        assertTrue(out.contains("UnsatisfiedLinkError: dynadax: cannot load " + bogus), out);
        assertTrue(out.contains("dynadax.library.path"), out);
    }

    /** Main class of {@link #aBadLibraryPathIsAClearUnsatisfiedLinkError}. */
    public static final class LoaderChild {
        public static void main(String[] args) throws Exception {
            try {
                Dax.probe(Path.of("/"));
                System.out.println("loaded");
            } catch (UnsatisfiedLinkError e) {
                System.out.println("UnsatisfiedLinkError: " + e.getMessage());
            } catch (NoClassDefFoundError e) {
                System.out.println("NoClassDefFoundError: " + e.getMessage() + " cause " + e.getCause());
            }
        }
    }
}
