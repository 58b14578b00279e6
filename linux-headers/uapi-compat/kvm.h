/*
 * KVM UAPI newer than the distribution's headers (Debian 12 ships 6.1).
 * Capability numbers follow include/uapi/linux/kvm.h of Linux 6.8+; each
 * is guarded so newer system headers win.
 */
#ifndef AMBER_UAPI_COMPAT_KVM_H
#define AMBER_UAPI_COMPAT_KVM_H

#include <linux/kvm.h>

#ifndef KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP
#define KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP 225      /* 6.3 */
#endif
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231                    /* 6.8 */
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232               /* 6.8 */
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233               /* 6.8 */
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234                     /* 6.8 */
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235                        /* 6.8 */
#endif
#ifndef KVM_CAP_PRE_FAULT_MEMORY
#define KVM_CAP_PRE_FAULT_MEMORY 236                /* 6.10 */
#endif

#endif
