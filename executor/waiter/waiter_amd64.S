# The waiter: what a created container's init becomes while it waits for
# start. It is a few hundred bytes of machine code instead of a Go runtime,
# so a created-not-started container holds almost no memory of its own.
#
# Contract with executor/init.go (runInit) and executor/ops.go (Start):
#   fd 3      an O_PATH descriptor of the container's state directory
#   argv[0]   the resolved path of the user program
#   argv[1..] the user program's argv
#   envp      the user program's environment
# With an empty path, argv[1] is the decimal number of an fd holding the
# init (init_amd64.S): the waiter marks it close-on-exec and execs it,
# with argv[2..] (the user program's path, then its argv).
# It opens exec.fifo under fd 3 for writing, close-on-exec, which blocks
# until start opens the fifo for reading; closes fd 3; and execs the user
# program, which closes the fifo: start reads EOF and knows the exec
# happened. If the exec fails it writes "execve failed: errno NNN" to the
# fifo and exits 127. If the fifo cannot be opened it exits 126.
#
# Position-independent, no data but the two strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.include "digits.inc"
	.globl _start
	.text
_start:
	mov	rbx, rsp			# argc, argv..., 0, envp..., 0
open_again:
	mov	edi, 3				# dirfd: the state directory
	lea	rsi, [rip + fifo]
	mov	edx, 0x80001			# O_WRONLY|O_CLOEXEC
	xor	r10d, r10d
	mov	eax, 257			# openat
	syscall
	cmp	rax, -4				# EINTR
	je	open_again
	test	rax, rax
	js	fail_open
	mov	r12, rax			# the fifo
	mov	edi, 3
	mov	eax, 3				# close(3): the host directory stays out
	syscall
	mov	rcx, [rbx]			# argc
	mov	rdi, [rbx + 8]			# path
	lea	rsi, [rbx + 16]			# argv
	lea	rdx, [rbx + rcx*8 + 16]		# envp
	cmp	byte ptr [rdi], 0
	jne	plain
	mov	r9, rdi				# ""
	mov	r8, [rsi]			# argv[1]: the init's fd, in decimal
	add	rsi, 8				# the init's argv: path, argv...
	xor	edi, edi
parse_fd:
	movzx	eax, byte ptr [r8]
	test	eax, eax
	jz	exec_init
	sub	eax, '0'
	imul	edi, edi, 10
	add	edi, eax
	inc	r8
	jmp	parse_fd
exec_init:
	push	rdx
	push	rsi
	push	rdi
	mov	esi, 2				# F_SETFD
	mov	edx, 1				# FD_CLOEXEC: the user program never sees it
	mov	eax, 72				# fcntl
	syscall
	pop	rdi
	pop	rsi
	pop	rdx
	mov	r10, rdx			# envp
	mov	rdx, rsi			# argv
	mov	rsi, r9				# ""
	mov	r8d, 0x1000			# AT_EMPTY_PATH
	mov	eax, 322			# execveat
	syscall
	jmp	exec_failed
plain:
	mov	eax, 59				# execve
	syscall
exec_failed:
	neg	rax
	mov	r13, rax			# errno
	mov	edi, r12d
	lea	rsi, [rip + msg]
	mov	edx, 21				# len("execve failed: errno ")
	mov	eax, 1				# write
	syscall
	sub	rsp, 16
	mov	rax, r13
	DIGITS3
	mov	edi, r12d
	mov	rsi, rsp
	mov	edx, 3
	mov	eax, 1				# write
	syscall
	mov	edi, 127
	mov	eax, 231			# exit_group
	syscall
fail_open:
	mov	edi, 126
	mov	eax, 231			# exit_group
	syscall
fifo:	.asciz	"exec.fifo"
msg:	.ascii	"execve failed: errno "
