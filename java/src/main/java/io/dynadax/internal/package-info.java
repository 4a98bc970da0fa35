/**
 * The JNI boundary: {@link io.dynadax.internal.Native}'s methods, the loader of the
 * native library and the use-after-close guard. Not an API: its classes may change in
 * any release.
 */
package io.dynadax.internal;
