# The reaper: what a container's monitor becomes once the container is
# created. It waits for the container's init and records how it ended, in a
# few hundred bytes of machine code and one thread instead of a Go runtime.
#
# Contract with executor/monitor.go (runMonitor) and executor/state.go:
#   fd 3      an O_PATH descriptor of the container's state directory
#   fd 4      the memory cgroup's OOM counter file (memory.events on v2,
#             memory.oom_control on v1) open for reading, or not open
#   children  the container's init, and nothing else
# It waits for any child (wait4(-1)), takes CLOCK_REALTIME, and writes
# under fd 3 the file "exit.tmp", fsynced, then renamed to "exit":
#   reconciled-exit 1\n
#   status N\n          (the raw wait status; absent if wait4 failed)
#   time SEC NSEC\n
#   followed by the counter file's bytes as read from offset 0.
# It exits 0, or 1 if the file could not be written.
#
# Position-independent, no data but the strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.globl _start
	.text
_start:
	sub	rsp, 8256			# [rsp] status, [rsp+16] timespec, [rsp+64] the file
wait_again:
	mov	rdi, -1				# any child: the init is the only one
	mov	rsi, rsp			# &status
	xor	edx, edx
	xor	r10d, r10d
	mov	eax, 61				# wait4
	syscall
	cmp	rax, -4				# EINTR
	je	wait_again
	mov	r12, rax			# < 0: no status
	xor	edi, edi			# CLOCK_REALTIME
	lea	rsi, [rsp + 16]
	mov	eax, 228			# clock_gettime
	syscall
	lea	rdi, [rsp + 64]
	lea	rsi, [rip + hdr]
	mov	ecx, 18				# len("reconciled-exit 1\n")
	rep movsb
	test	r12, r12
	js	no_status
	lea	rsi, [rip + status]
	mov	ecx, 7				# len("status ")
	rep movsb
	mov	eax, dword ptr [rsp]
	call	itoa
	mov	byte ptr [rdi], 10
	inc	rdi
no_status:
	lea	rsi, [rip + time]
	mov	ecx, 5				# len("time ")
	rep movsb
	mov	rax, [rsp + 16]
	call	itoa
	mov	byte ptr [rdi], 32
	inc	rdi
	mov	rax, [rsp + 24]
	call	itoa
	mov	byte ptr [rdi], 10
	inc	rdi
	mov	r13, rdi			# end of what is written so far
	mov	edi, 4
	mov	rsi, r13
	mov	edx, 4096
	xor	r10d, r10d
	mov	eax, 17				# pread64(4, end, 4096, 0)
	syscall
	test	rax, rax
	jle	open_tmp
	add	r13, rax
open_tmp:
	mov	edi, 3
	lea	rsi, [rip + tmpname]
	mov	edx, 0x80241			# O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC
	mov	r10d, 0x180			# 0600
	mov	eax, 257			# openat
	syscall
	cmp	rax, -4
	je	open_tmp
	test	rax, rax
	js	fail
	mov	r14, rax
	lea	r15, [rsp + 64]
write_more:
	mov	rdx, r13
	sub	rdx, r15
	jz	written
	mov	edi, r14d
	mov	rsi, r15
	mov	eax, 1				# write
	syscall
	cmp	rax, -4
	je	write_more
	test	rax, rax
	jle	fail
	add	r15, rax
	jmp	write_more
written:
	mov	edi, r14d
	mov	eax, 74				# fsync
	syscall
	mov	edi, r14d
	mov	eax, 3				# close
	syscall
	mov	edi, 3
	lea	rsi, [rip + tmpname]
	mov	edx, 3
	lea	r10, [rip + name]
	mov	eax, 264			# renameat
	syscall
	test	rax, rax
	js	fail
	xor	edi, edi
	mov	eax, 231			# exit_group
	syscall
fail:
	mov	edi, 1
	mov	eax, 231			# exit_group
	syscall

# itoa writes rax (unsigned) in decimal at rdi and advances rdi; the digits
# are built in the red zone below rsp. Clobbers rax, rcx, rdx, r8, r9.
itoa:
	lea	r8, [rsp - 8]
	mov	r9, r8
	mov	ecx, 10
digit:
	xor	edx, edx
	div	rcx
	add	dl, 48
	dec	r8
	mov	[r8], dl
	test	rax, rax
	jnz	digit
copy:
	cmp	r8, r9
	je	done
	mov	al, [r8]
	mov	[rdi], al
	inc	rdi
	inc	r8
	jmp	copy
done:
	ret

hdr:	.ascii	"reconciled-exit 1\n"
status:	.ascii	"status "
time:	.ascii	"time "
tmpname: .asciz	"exit.tmp"
name:	.asciz	"exit"
