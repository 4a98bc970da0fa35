package io.dynadax.log;

/** When an append is durable. */
public enum Durability {
    /** Each append persists its own record before it returns. */
    EACH,
    /**
     * Group commit (the default): an append returns once durable, and concurrent
     * appenders share one persist.
     */
    GROUP,
    /** Appends are not persisted; {@link Log#sync()} makes them durable. */
    NONE
}
