/*
 * netstack native Internet checksum (RFC 1071, RFC 1624).
 *
 * This header is also the cffi cdef: native/build_checksum.py reads the
 * block between the NS_CDEF_BEGIN / NS_CDEF_END markers, so keep it plain
 * C declarations there (no macros, no includes).
 *
 * Byte order: every 16-bit value crossing this API (results, `initial`,
 * the words of an incremental update) is a number in network byte order
 * reading, i.e. the value of the big-endian 16-bit field on the wire.
 */
#ifndef NETSTACK_CHECKSUM_H
#define NETSTACK_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* NS_CDEF_BEGIN */

/* RFC 1071: ones'-complement sum of buf (any length, any alignment; an odd
 * trailing byte is padded with zero), added to `initial` (a previous result
 * of ns_sum16, or 0), folded to 16 bits and NOT complemented.  The result is
 * 0 only when every word and `initial` are zero. */
uint16_t ns_sum16(const char *buf, size_t len, uint16_t initial);

/* RFC 1071 checksum: ~ns_sum16(buf, len, 0) & 0xFFFF. */
uint16_t ns_checksum(const char *buf, size_t len);

/* RFC 9293 §3.1 / RFC 768: checksum over the IPv4 pseudo-header
 * (src, dst, zero, proto, len) followed by the segment, in one call.
 * src and dst are host-order integers of the IPv4 addresses. */
uint16_t ns_pseudo_checksum(uint32_t src, uint32_t dst, uint8_t proto,
                            const char *buf, size_t len);

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). */
uint16_t ns_incremental_update(uint16_t old_checksum, uint16_t old_word,
                               uint16_t new_word);

/* Kernel selection (run time, by CPU features): "scalar", "avx2". */
const char *ns_path_name(void);
int ns_path_supported(const char *name);   /* 1 yes, 0 no / unknown */
int ns_select_path(const char *name);      /* 0 ok, -1 unknown or unsupported */

/* Benchmark references: a call that does nothing with the same arguments
 * as ns_checksum, and a plain memcpy (the memory-bandwidth ceiling). */
uint16_t ns_noop(const char *buf, size_t len);
void ns_copy(char *dst, const char *src, size_t len);

/* NS_CDEF_END */

#endif /* NETSTACK_CHECKSUM_H */
