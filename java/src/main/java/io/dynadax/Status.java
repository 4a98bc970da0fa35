package io.dynadax;

import java.nio.file.Path;

/**
 * The mode of a file or directory as {@link Dax#stat(Path)} reads it: physical (what is
 * stored) and effective (what is in force), and what backs it.
 */
public final class Status {
    private final Path path;
    private final boolean directory;
    private final Mode physical;
    private final Mode effective;
    private final String backing;
    private final boolean pending;
    private final String reason;
    private final String persistence;
    private final int liveMappings;
    private final String policy;

    // Built by the native library (the constructor is part of the JNI contract).
    Status(String path, boolean directory, int physical, int effective, String backing, boolean pending,
            String reason, String persistence, int liveMappings, String policy) {
        this.path = Path.of(path);
        this.directory = directory;
        this.physical = Mode.of(physical);
        this.effective = Mode.of(effective);
        this.backing = backing;
        this.pending = pending;
        this.reason = reason;
        this.persistence = persistence;
        this.liveMappings = liveMappings;
        this.policy = policy;
    }

    /**
     * The path this status is of.
     *
     * @return the path
     */
    public Path path() {
        return path;
    }

    /**
     * Whether it is a directory (whose mode is what new children inherit).
     *
     * @return true for a directory
     */
    public boolean isDirectory() {
        return directory;
    }

    /**
     * The stored mode ({@code FS_XFLAG_DAX}, the {@code user.dynadax.mode} attribute or
     * the sidecar file).
     *
     * @return the physical mode
     */
    public Mode physical() {
        return physical;
    }

    /**
     * The mode in force, after the volume policy and what the kernel does.
     *
     * @return the effective mode, or null for a directory
     */
    public Mode effective() {
        return effective;
    }

    /**
     * What serves the file: {@code kernel-dax}, {@code emulated}, {@code page-cache} or
     * {@code dram-cache}.
     *
     * @return the backing, or null for a directory
     */
    public String backing() {
        return backing;
    }

    /**
     * Whether a physical change waits to take effect (on kernel DAX, until the last
     * holder closes the file).
     *
     * @return true if pending
     */
    public boolean pending() {
        return pending;
    }

    /**
     * Why the effective mode is what it is.
     *
     * @return the explanation
     */
    public String reason() {
        return reason;
    }

    /**
     * How writes to the file are made durable, in words.
     *
     * @return the persistence method, or null for a directory
     */
    public String persistence() {
        return persistence;
    }

    /**
     * How many dynadax mappings of the file are alive in this process.
     *
     * @return the count
     */
    public int liveMappings() {
        return liveMappings;
    }

    /**
     * The policy of the volume the path belongs to ({@code inode}, {@code always} or
     * {@code never}).
     *
     * @return the policy
     */
    public String policy() {
        return policy;
    }

    @Override
    public String toString() {
        return "Status[path=" + path + ", directory=" + directory + ", physical=" + physical + ", effective="
                + effective + ", backing=" + backing + ", pending=" + pending + ", persistence=" + persistence
                + ", liveMappings=" + liveMappings + ", policy=" + policy + ", reason=" + reason + "]";
    }
}
