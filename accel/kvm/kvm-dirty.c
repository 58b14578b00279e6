/*
 * KVM dirty logging of guest writes.  With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
 * reading the log does not re-protect pages: the caller clears (re-arms)
 * each range just before copying it, which keeps mmu_lock holds short.
 * Writes amber makes itself are not seen by KVM; callers merge their own
 * bitmap.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <glib.h>

#include "kvm-int.h"
#include "system/machine.h"

static bool set_slot_flags(AccelState *s, const MemRegion *r, uint32_t flags, Error **errp)
{
    struct kvm_userspace_memory_region mr = {
        .slot = r->slot,
        .flags = flags,
        .guest_phys_addr = r->gpa,
        .memory_size = r->size,
        .userspace_addr = (uintptr_t)(r->block->host + r->offset),
    };
    if (ioctl(s->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
        error_setg_errno(errp, errno, "cannot change dirty logging of memory slot %d",
                         r->slot);
        return false;
    }
    return true;
}

bool kvm_dirty_log_start(AccelState *s, Error **errp)
{
    if (s->dirty_logging) {
        return true;
    }
    int caps = ioctl(s->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    if (caps > 0 && !s->manual_dirty) {
        struct kvm_enable_cap cap = {
            .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
            .args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
                       (caps & KVM_DIRTY_LOG_INITIALLY_SET),
        };
        s->manual_dirty = ioctl(s->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
    }
    RamBlockList *l = machine_ram(s->m);
    for (int i = 0; i < l->nregions; i++) {
        if (!set_slot_flags(s, &l->regions[i], KVM_MEM_LOG_DIRTY_PAGES, errp)) {
            for (int j = 0; j < i; j++) {
                set_slot_flags(s, &l->regions[j], 0, NULL);
            }
            return false;
        }
    }
    s->dirty_logging = true;
    return true;
}

bool kvm_dirty_log_sync(AccelState *s, const MemRegion *r, unsigned long *bitmap,
                        Error **errp)
{
    if (!s->dirty_logging) {
        error_setg(errp, "dirty logging is not enabled");
        return false;
    }
    struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = bitmap };
    if (ioctl(s->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
        error_setg_errno(errp, errno, "KVM_GET_DIRTY_LOG of slot %d failed", r->slot);
        return false;
    }
    return true;
}

bool kvm_dirty_log_clear(AccelState *s, const MemRegion *r, uint64_t first_page,
                         uint64_t npages, const unsigned long *bitmap, Error **errp)
{
    if (!s->manual_dirty) {
        return true;    /* KVM_GET_DIRTY_LOG already cleared and re-protected */
    }
    struct kvm_clear_dirty_log clr = {
        .slot = r->slot,
        .num_pages = npages,
        .first_page = first_page,
        .dirty_bitmap = (void *)bitmap,
    };
    if (ioctl(s->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0) {
        error_setg_errno(errp, errno, "KVM_CLEAR_DIRTY_LOG of slot %d pages %" PRIu64
                         "+%" PRIu64 " failed", r->slot, first_page, npages);
        return false;
    }
    return true;
}

void kvm_dirty_log_stop(AccelState *s)
{
    if (!s->dirty_logging) {
        return;
    }
    RamBlockList *l = machine_ram(s->m);
    for (int i = 0; i < l->nregions; i++) {
        set_slot_flags(s, &l->regions[i], 0, NULL);
    }
    s->dirty_logging = false;
}
