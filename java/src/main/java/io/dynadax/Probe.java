package io.dynadax;

/**
 * What {@link Dax#probe(java.nio.file.Path)} found out about a path, without changing
 * anything: whether it can do DAX and {@code MAP_SYNC}, how a {@code direct} file there
 * would be persisted, and where modes are kept.
 */
public final class Probe {
    private final boolean dax;
    private final boolean mapSync;
    private final String persistence;
    private final String reason;
    private final String fsType;
    private final String mountPoint;
    private final String flushInstruction;
    private final boolean exists;
    private final Mode physical;
    private final Mode effective;

    // Built by the native library (the constructor is part of the JNI contract).
    Probe(boolean dax, boolean mapSync, String persistence, String reason, String fsType, String mountPoint,
            String flushInstruction, boolean exists, int physical, int effective) {
        this.dax = dax;
        this.mapSync = mapSync;
        this.persistence = persistence;
        this.reason = reason;
        this.fsType = fsType;
        this.mountPoint = mountPoint;
        this.flushInstruction = flushInstruction;
        this.exists = exists;
        this.physical = Mode.of(physical);
        this.effective = Mode.of(effective);
    }

    /**
     * Whether the kernel can serve files here with DAX (no page cache).
     *
     * @return true for kernel DAX
     */
    public boolean dax() {
        return dax;
    }

    /**
     * Whether {@code MAP_SYNC} mappings are possible here.
     *
     * @return true if a mapping's stores need only a cache-line flush to be durable
     */
    public boolean mapSync() {
        return mapSync;
    }

    /**
     * How a {@code direct} file here is made durable, in words.
     *
     * @return the persistence method, as the native library words it
     */
    public String persistence() {
        return persistence;
    }

    /**
     * Why {@link #dax()} and {@link #mapSync()} are what they are.
     *
     * @return the explanation
     */
    public String reason() {
        return reason;
    }

    /**
     * The file system's type ({@code ext4}, {@code xfs}, {@code tmpfs}, ...).
     *
     * @return the type name
     */
    public String fsType() {
        return fsType;
    }

    /**
     * The mount point of the file system holding the path.
     *
     * @return the mount point, as a string
     */
    public String mountPoint() {
        return mountPoint;
    }

    /**
     * The cache-line flush instruction persisting uses on this CPU ({@code clwb},
     * {@code clflushopt} or {@code clflush}).
     *
     * @return the instruction's name
     */
    public String flushInstruction() {
        return flushInstruction;
    }

    /**
     * Whether the path exists (a probe of a path that does not is allowed).
     *
     * @return true if it exists
     */
    public boolean exists() {
        return exists;
    }

    /**
     * The physical mode of the path if it exists, else the mode a new file there would
     * inherit.
     *
     * @return the mode
     */
    public Mode physical() {
        return physical;
    }

    /**
     * The effective mode of the existing file, or of a file created at the path now.
     *
     * @return the mode
     */
    public Mode effective() {
        return effective;
    }

    @Override
    public String toString() {
        return "Probe[dax=" + dax + ", mapSync=" + mapSync + ", persistence=" + persistence + ", fsType=" + fsType
                + ", mountPoint=" + mountPoint + ", flushInstruction=" + flushInstruction + ", exists=" + exists
                + ", physical=" + physical + ", effective=" + effective + ", reason=" + reason + "]";
    }
}
