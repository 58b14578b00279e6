/*
 * Boot path of the built-in guest: everything here runs in ring 0, which
 * KVM emulates instruction by instruction on some hosts (PVM), so it does
 * the minimum: identity-map RAM with 2 MiB pages, enter long mode, load a
 * GDT/TSS/IDT and drop to ring 3.  The rest (parameters, AP start-up,
 * workloads) is C in ring 3.
 *
 * Avoided on purpose in ring 0: int n / int3, cmpxchg16b, xsave, SSE.
 */
#include "guest.h"

#define MB_MAGIC        0x1BADB002
#define MB_FLAGS        0x00000003      /* align modules, want memory map */
#define MB_BOOT_MAGIC   0x2BADB002

#define PTE_P_RW_U      0x07
#define PDE_2M          0x87            /* present, writable, user, 2 MiB */
#define TSS_SHIFT       9               /* 512 bytes per vCPU: TSS + I/O bitmap */
#define IOMAP_PORTS     0x600

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

/* ---------------------------------------------------------------- 32-bit */
    .section .boot, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    cmp $MB_BOOT_MAGIC, %eax
    jne not_multiboot
    mov %ebx, boot_mbi
    movl $0, boot_mbi + 4
    mov $(kstacks + (1 << GUEST_KSTACK_SHIFT)), %esp
    call map_ram
    xor %ebp, %ebp                      /* BSP */
    jmp enter_long

not_multiboot:
    mov $DEBUG_EXIT_PORT, %dx
    mov $EXIT_FAULT, %eax
    out %eax, %dx
1:  hlt
    jmp 1b

/*
 * Find the top of RAM in the multiboot memory map (ebx = info) and map
 * [0, top) rounded up to 1 GiB, never less than 4 GiB (the LAPIC lives
 * just below 4 GiB).  Only the tables are written: RAM itself is not
 * touched, so a large guest populates nothing it does not use.
 */
map_ram:
    mov $4, %esi                        /* esi = GiB to map */
    testl $(1 << 6), (%ebx)
    jz 4f
    mov 48(%ebx), %edi                  /* mmap_addr */
    mov 44(%ebx), %ecx                  /* mmap_length */
    add %edi, %ecx
1:  cmp %ecx, %edi
    jae 4f
    cmpl $1, 20(%edi)                   /* type 1: RAM */
    jne 3f
    mov 4(%edi), %eax
    mov 8(%edi), %edx
    add 12(%edi), %eax
    adc 16(%edi), %edx                  /* edx:eax = end */
    add $0x3fffffff, %eax
    adc $0, %edx
    shrd $30, %edx, %eax
    shr $30, %edx
    jz 2f
    mov $GUEST_MAX_GIB, %eax            /* beyond 4 EiB: clamp below */
2:  cmp %esi, %eax
    jbe 3f
    mov %eax, %esi
3:  add (%edi), %edi                    /* entry size excludes its own field */
    add $4, %edi
    jmp 1b
4:  cmp $GUEST_MAX_GIB, %esi
    jbe 5f
    mov $GUEST_MAX_GIB, %esi
5:  mov %esi, mapped_gib

    mov $(pdpt + PTE_P_RW_U), %eax
    mov %eax, pml4
    movl $0, pml4 + 4
    /* PDPT: one page directory per GiB, the rest not present. */
    mov $pdpt, %edi
    mov $(pd + PTE_P_RW_U), %eax
    xor %ecx, %ecx
6:  xor %edx, %edx
    cmp %esi, %ecx
    jae 7f
    mov %eax, %edx
7:  mov %edx, (%edi)
    movl $0, 4(%edi)
    add $8, %edi
    add $4096, %eax
    inc %ecx
    cmp $512, %ecx
    jb 6b
    /* Page directories: 512 x 2 MiB per GiB. */
    mov $pd, %edi
    mov %esi, %ecx
    shl $9, %ecx
    mov $PDE_2M, %eax
    xor %edx, %edx
9:  mov %eax, (%edi)
    mov %edx, 4(%edi)
    add $8, %edi
    add $0x200000, %eax
    adc $0, %edx
    dec %ecx
    jnz 9b
    ret

/* Common to the BSP (ebp = 0) and the APs (ebp = 1). */
enter_long:
    mov $pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                      /* PAE */
    mov %eax, %cr4
    mov $0xc0000080, %ecx               /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0x9fffffff, %eax               /* caches on */
    or $0x80000001, %eax                /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_ptr
    ljmp $SEL_KCODE64, $long_entry

ap_entry32:
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $1, %ebp
    jmp enter_long

/* ---------------------------------------------------------------- 16-bit */
/*
 * Copied to GUEST_TRAMPOLINE by vCPU 0 before the SIPI; must not refer to
 * its own link address, only to offsets from ap_tramp_start.
 */
    .code16
    .globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (GUEST_TRAMPOLINE + tramp_gdtr - ap_tramp_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $SEL_KCODE32, $ap_entry32
    .align 4
tramp_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
ap_tramp_end:

/* ---------------------------------------------------------------- 64-bit */
    .code64
long_entry:
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    test %ebp, %ebp
    jnz 1f
    xor %edi, %edi                      /* BSP is vCPU 0 */
    call build_idt
    jmp 2f
1:  mov $1, %eax                        /* AP: take the next index */
    lock xadd %eax, ap_next
    mov %eax, %edi
    cmp $GUEST_MAX_VCPUS, %edi          /* too many, or came too late */
    jae park
2:  mov %rdi, %rax                      /* ring-0 stack */
    shl $GUEST_KSTACK_SHIFT, %rax
    lea kstacks + (1 << GUEST_KSTACK_SHIFT)(%rax), %rsp
    mov %rdi, %rbx                      /* rbx = this vCPU's TSS */
    shl $TSS_SHIFT, %rbx
    add $tss_area, %rbx
    mov %rsp, 4(%rbx)                   /* rsp0 */
    /*
     * I/O bitmap allowing ports below IOMAP_PORTS (zero bits, from .bss).
     * IOPL=3 should be enough, but PVM drops IOPL on the way to ring 3
     * and checks the TSS bitmap instead.
     */
    movw $104, 102(%rbx)
    movb $0xff, 104 + IOMAP_PORTS / 8(%rbx)
    mov %rdi, %rsi                      /* rsi = its GDT descriptor */
    shl $4, %rsi
    add $(gdt + SEL_TSS0), %rsi
    movw $(104 + IOMAP_PORTS / 8), (%rsi)  /* limit: bitmap + 0xff byte */
    mov %ebx, %eax
    mov %ax, 2(%rsi)
    shr $16, %eax
    mov %al, 4(%rsi)
    movb $0x89, 5(%rsi)                 /* present, 64-bit TSS available */
    movb $0, 6(%rsi)
    mov %ah, 7(%rsi)
    movq $0, 8(%rsi)
    mov %edi, %eax
    shl $4, %eax
    add $SEL_TSS0, %eax
    ltr %ax
    lidt idt_ptr
    /* Ring 3: user segments, IOPL=3 for port I/O, interrupts off. */
    mov %rdi, %rax
    shl $GUEST_USTACK_SHIFT, %rax
    add $(ustacks + (1 << GUEST_USTACK_SHIFT)), %rax
    push $(SEL_UDATA | 3)
    push %rax
    push $0x3002
    push $(SEL_UCODE64 | 3)
    push $ring3_entry
    iretq

park:
    cli
    hlt
    jmp park

/* 32 interrupt gates to the stubs below (16 bytes apart). */
build_idt:                              /* keeps rdi (the vCPU index) */
    mov $idt, %r8d
    mov $exc_stubs, %eax
    mov $32, %ecx
1:  mov %ax, (%r8)
    movw $SEL_KCODE64, 2(%r8)
    movw $0x8e00, 4(%r8)
    mov %eax, %edx
    shr $16, %edx
    mov %edx, 6(%r8)                    /* offset 31:16, then 63:32 = 0 */
    movw $0, 10(%r8)
    movl $0, 12(%r8)
    add $16, %r8d
    add $16, %eax
    dec %ecx
    jnz 1b
    ret

    .align 16
exc_stubs:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .align 16
    .if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push $0
    .endif
    push $\vec
    jmp exc_common
    .endr

exc_common:
    mov %rsp, %rdi                      /* vector, error, rip, cs, rflags, rsp, ss */
    and $-16, %rsp
    call guest_exception
    jmp park

    .text
ring3_entry:
    /* rdi = vCPU index, kept across iretq */
    call guest_cpu_main
1:  jmp 1b

/* ---------------------------------------------------------------- data */
    .section .records, "aw"
    .globl guest_records
guest_records:
    .space GUEST_RECORDS_SIZE

    .data
    .align 16
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff            /* 0x08 code 32, ring 0 */
    .quad 0x00cf93000000ffff            /* 0x10 data, ring 0 */
    .quad 0x00af9b000000ffff            /* 0x18 code 64, ring 0 */
    .quad 0x00cff3000000ffff            /* 0x20 data, ring 3 */
    .quad 0x00affb000000ffff            /* 0x28 code 64, ring 3 */
    .fill 2 * GUEST_MAX_VCPUS, 8, 0     /* 0x30 TSS descriptors */
gdt_end:
    .align 8
    .word 0, 0, 0
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt
    .word 0, 0, 0
idt_ptr:
    .word 32 * 16 - 1
    .quad idt

    .globl boot_mbi, mapped_gib, ap_next
    .align 8
boot_mbi:
    .quad 0
mapped_gib:
    .long 0
ap_next:
    .long 1

    .bss
    .align 4096
pml4:
    .space 4096
pdpt:
    .space 4096
pd:
    .space 4096 * GUEST_MAX_GIB
kstacks:
    .space GUEST_MAX_VCPUS << GUEST_KSTACK_SHIFT
ustacks:
    .space GUEST_MAX_VCPUS << GUEST_USTACK_SHIFT
idt:
    .space 32 * 16
    .align 64
tss_area:
    .space (1 << TSS_SHIFT) * GUEST_MAX_VCPUS
