# The setup runner: runs lists of system calls that its creator sends it,
# so that a container's init can be set up without a Go runtime starting
# in it. It knows nothing of containers: what to call, with what, and in
# which order is the creator's (program.go builds and sends the lists).
#
# Contract with program.go:
#   fd 3      a stream socket to the creator, and the first error fd
#   argv      ignored; envp ignored (an execve names its own)
# Slots: 64 words on the stack that the calls' arguments and results live
# in. Slot 0 is the error fd (3 at start; a call may store a new one, the
# exec fifo's, there). Slots 1-16 get the descriptors that came with the
# latest chunk (SCM_RIGHTS, received close-on-exec), in order; the rest
# (17-63) are the program's, and keep their values from chunk to chunk.
#
# It loops: it reads a chunk header from fd 3 with recvmsg (16 bytes: the
# magic "RCLDPRG1", the chunk's length), the chunk into an anonymous
# mapping, adds the mapping's address to the words the chunk lists as
# pointers, and runs the chunk's calls in order; then reads the next chunk.
# The mapping (64 KiB at least) is kept for the chunks that fit in it: a
# chunk costs no mmap, no munmap (a TLB flush) and no fault on the pages
# an earlier chunk touched, such as the one a spare's init reads ahead.
# EOF or an error on fd 3 ends it with exit status 1, quietly (the creator
# is gone or gave up). A chunk:
#   u64 nops, u64 nrelocs, nops calls (9 words each), nrelocs offsets, data
# A call:
#   w0     the system call's number (low 32 bits) and flags (high 32):
#          bits 0-11  each argument's kind, two bits each: 0 the word
#                     itself, 1 the chunk's address plus the word (data in
#                     the chunk), 2 the value of slot w, 3 slot w's address
#          bits 12-17 1 + the slot to store the result in (0: none)
#          bit  18    the result must be w8
#          bits 20-27 an errno that counts as success (its negative result
#                     is stored)
#   w1-w6  the arguments
#   w7     the message's offset in the chunk (bits 0-31), its length
#          (32-47) and the exit status on failure (48-55)
#   w8     the expected result (bit 18)
# A call interrupted (EINTR) is made again. A call that fails writes its
# message, ": errno " and three digits (000: the result was not w8) to the
# error fd and exits with its status.
#
# Position-independent, no data but the string after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.include "digits.inc"
	.globl _start
	.text
# Stack, from rsp: [0, 32) digits; [32, 88) msghdr; [96, 112) iovec;
# [128, 208) control (a cmsghdr and 16 fds); [224, 240) the chunk header;
# [240, 248) the size of the mapping at r12; [256, 768) the slots (r15);
# [800, 848) the arguments of a call.
# Registers: r12 the mapping the chunk is read into (0: none), rbp the
# chunk's length, r13 the next call, r14 the calls left, r15 the slots.
_start:
	sub	rsp, 1024
	and	rsp, -16
	lea	r15, [rsp + 256]
	mov	qword ptr [r15], 3		# the error fd: the creator's socket
	mov	ecx, 1
init_slots:
	mov	qword ptr [r15 + rcx*8], -1
	inc	ecx
	cmp	ecx, 64
	jb	init_slots
	xor	r12d, r12d
	mov	qword ptr [rsp + 240], 0
recv_header:
	xor	eax, eax
	mov	[rsp + 32], rax			# msg_name
	mov	[rsp + 40], rax			# msg_namelen
	lea	rax, [rsp + 96]
	mov	[rsp + 48], rax			# msg_iov
	mov	qword ptr [rsp + 56], 1		# msg_iovlen
	lea	rax, [rsp + 128]
	mov	[rsp + 64], rax			# msg_control
	mov	qword ptr [rsp + 72], 80	# msg_controllen: CMSG_SPACE(16 * 4)
	mov	qword ptr [rsp + 80], 0		# msg_flags
	lea	rax, [rsp + 224]
	mov	[rsp + 96], rax			# iov_base: the header
	mov	qword ptr [rsp + 104], 16	# iov_len
recv_again:
	mov	edi, 3
	lea	rsi, [rsp + 32]
	mov	edx, 0x40000000			# MSG_CMSG_CLOEXEC
	mov	eax, 47				# recvmsg
	syscall
	cmp	rax, -4				# EINTR
	je	recv_again
	test	rax, rax
	jle	hangup
	mov	rbx, rax			# header bytes read
	cmp	qword ptr [rsp + 72], 20	# msg_controllen >= CMSG_LEN(4)
	jb	header_rest
	cmp	dword ptr [rsp + 136], 1	# SOL_SOCKET
	jne	header_rest
	cmp	dword ptr [rsp + 140], 1	# SCM_RIGHTS
	jne	header_rest
	mov	rcx, [rsp + 128]		# cmsg_len
	sub	rcx, 16
	shr	rcx, 2				# the number of fds
	cmp	ecx, 16
	jbe	1f
	mov	ecx, 16
1:	xor	edx, edx
copy_fds:
	cmp	edx, ecx
	jae	header_rest
	movsxd	rax, dword ptr [rsp + 144 + rdx*4]
	mov	[r15 + 8 + rdx*8], rax		# slot 1 + i
	inc	edx
	jmp	copy_fds
header_rest:
	lea	rsi, [rsp + 224 + rbx]
	mov	edx, 16
	sub	rdx, rbx
	call	read_full
	movabs	rax, 0x31475250444c4352		# "RCLDPRG1"
	cmp	[rsp + 224], rax
	jne	hangup
	mov	rbp, [rsp + 232]		# the chunk's length
	cmp	rbp, 16
	jb	hangup
	cmp	rbp, 0x1000000			# 16 MiB at most
	ja	hangup
	cmp	rbp, [rsp + 240]
	jbe	read_chunk			# fits in the mapping: kept
	test	r12, r12
	jz	1f
	mov	rdi, r12
	mov	rsi, [rsp + 240]
	mov	eax, 11				# munmap the one too small
	syscall
	xor	r12d, r12d
	mov	qword ptr [rsp + 240], 0
1:	mov	rsi, rbp
	cmp	rsi, 0x10000
	jae	2f
	mov	esi, 0x10000			# 64 KiB at least
2:	mov	[rsp + 240], rsi
	xor	edi, edi
	mov	edx, 3				# PROT_READ|PROT_WRITE
	mov	r10d, 0x22			# MAP_PRIVATE|MAP_ANONYMOUS
	mov	r8, -1
	xor	r9d, r9d
	mov	eax, 9				# mmap
	syscall
	cmp	rax, -4095
	jae	hangup
	mov	r12, rax
read_chunk:
	mov	rsi, r12
	mov	rdx, rbp
	call	read_full
	mov	r14, [r12]			# nops
	mov	rcx, [r12 + 8]			# nrelocs
	lea	r13, [r12 + 16]
	imul	rax, r14, 72
	lea	rsi, [r13 + rax]		# the relocations
relocate:
	test	rcx, rcx
	jz	next_call
	mov	rax, [rsi]
	cmp	rax, rbp			# inside the chunk, or ignored
	jae	1f
	add	[r12 + rax], r12
1:	add	rsi, 8
	dec	rcx
	jmp	relocate

next_call:
	test	r14, r14
	jz	recv_header
	mov	rbx, [r13]
	shr	rbx, 32				# flags
	xor	r8d, r8d
arg_loop:
	mov	rdx, [r13 + 8 + r8*8]
	lea	ecx, [r8 + r8]
	mov	r9, rbx
	shr	r9, cl
	and	r9d, 3
	jz	arg_store			# 0: the word itself
	cmp	r9d, 1
	jne	arg_slot
	add	rdx, r12			# 1: in the chunk
	jmp	arg_store
arg_slot:
	and	edx, 63
	lea	r10, [r15 + rdx*8]
	mov	rdx, r10			# 3: the slot's address
	cmp	r9d, 3
	je	arg_store
	mov	rdx, [r10]			# 2: the slot's value
arg_store:
	mov	[rsp + 800 + r8*8], rdx
	inc	r8d
	cmp	r8d, 6
	jb	arg_loop
do_call:
	mov	eax, dword ptr [r13]
	mov	rdi, [rsp + 800]
	mov	rsi, [rsp + 808]
	mov	rdx, [rsp + 816]
	mov	r10, [rsp + 824]
	mov	r8, [rsp + 832]
	mov	r9, [rsp + 840]
	syscall
	cmp	rax, -4				# EINTR
	je	do_call
	cmp	rax, -4095
	jae	call_failed
	bt	ebx, 18
	jnc	store
	cmp	rax, [r13 + 64]
	jne	unexpected
store:
	mov	ecx, ebx
	shr	ecx, 12
	and	ecx, 63
	jz	advance
	mov	[r15 + rcx*8 - 8], rax
advance:
	add	r13, 72
	dec	r14
	jmp	next_call
call_failed:
	mov	rcx, rax
	neg	rcx				# errno
	mov	edx, ebx
	shr	edx, 20
	and	edx, 255
	jz	report
	cmp	ecx, edx
	je	store				# the errno that counts as success
report:
	mov	rax, rcx
	jmp	write_error
unexpected:
	xor	eax, eax			# errno 000: not the expected result
write_error:
	mov	rbx, rax
	mov	r14, [r13 + 56]
	mov	rdi, [r15]
	mov	esi, r14d
	add	rsi, r12
	mov	rdx, r14
	shr	rdx, 32
	and	edx, 0xffff
	mov	eax, 1				# write the message
	syscall
	mov	rdi, [r15]
	lea	rsi, [rip + s_errno]
	mov	edx, 8
	mov	eax, 1				# write ": errno "
	syscall
	mov	rax, rbx
	DIGITS3
	mov	rdi, [r15]
	mov	rsi, rsp
	mov	edx, 3
	mov	eax, 1				# write the digits
	syscall
	mov	rdi, r14
	shr	rdi, 48
	and	edi, 255
	mov	eax, 231			# exit_group
	syscall

# read_full reads exactly rdx bytes from fd 3 to rsi; EOF or an error
# ends the runner.
read_full:
	test	rdx, rdx
	jz	1f
	mov	edi, 3
	xor	eax, eax			# read
	syscall
	cmp	rax, -4
	je	read_full
	test	rax, rax
	jle	hangup
	add	rsi, rax
	sub	rdx, rax
	jmp	read_full
1:	ret

hangup:
	mov	edi, 1
	mov	eax, 231			# exit_group
	syscall

s_errno:	.ascii	": errno "
