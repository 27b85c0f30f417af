# The user-namespace joiner: what a process exec'd into a container with
# its own user namespace runs first. setns(CLONE_NEWUSER) needs a
# single-threaded caller, which a Go process never is (runc does it in C
# before the Go runtime starts); this does it in a few instructions and
# then execs the exec stage (executor/exec.go, runExec), a Go process that
# is then inside the user namespace, as its root.
#
# Contract with executor/exec.go (Runtime.Exec):
#   argv[0]   the fd of the container's user namespace, in decimal
#   argv[1]   the fd of the program to exec (reconciled), in decimal
#   argv[2]   the fd of the sync socket, in decimal: a failure is reported
#             there as the exec stage reports one ({"error":"..."})
#   argv[3]   the fd holding this program, in decimal (closed)
#   argv[4..] the program's argv
#   envp      the program's environment
# It joins the user namespace, closes its fd and its own, becomes root of
# the namespace (setresgid(0,0,0), setresuid(0,0,0), as runc's nsexec
# does, so that the exec keeps every capability there), marks the
# program's fd close-on-exec and execs it (execveat, AT_EMPTY_PATH). On a
# failure it writes {"error":"user namespace: STEP: errno NNN"} to the
# sync socket and exits 1.
#
# Position-independent, no data but the strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.include "digits.inc"
	.globl _start
	.text
_start:
	mov	rbx, rsp			# argc, argv..., 0, envp..., 0
	mov	rdi, [rbx + 8]
	call	atoi
	mov	r12, rax			# the user namespace
	mov	rdi, [rbx + 16]
	call	atoi
	mov	r13, rax			# the program
	mov	rdi, [rbx + 24]
	call	atoi
	mov	r14, rax			# the sync socket
	mov	rdi, [rbx + 32]
	call	atoi
	mov	edi, eax
	mov	eax, 3				# close(this program's fd)
	syscall
	mov	edi, r12d
	mov	esi, 0x10000000			# CLONE_NEWUSER
	mov	eax, 308			# setns
	syscall
	lea	r15, [rip + s_setns]
	test	rax, rax
	js	fail
	mov	edi, r12d
	mov	eax, 3				# close(the namespace's fd)
	syscall
	xor	edi, edi
	xor	esi, esi
	xor	edx, edx
	mov	eax, 119			# setresgid(0, 0, 0)
	syscall
	lea	r15, [rip + s_setresgid]
	test	rax, rax
	js	fail
	xor	edi, edi
	xor	esi, esi
	xor	edx, edx
	mov	eax, 117			# setresuid(0, 0, 0)
	syscall
	lea	r15, [rip + s_setresuid]
	test	rax, rax
	js	fail
	mov	edi, r13d
	mov	esi, 2				# F_SETFD
	mov	edx, 1				# FD_CLOEXEC
	mov	eax, 72				# fcntl
	syscall
	mov	rcx, [rbx]			# argc
	mov	edi, r13d
	lea	rsi, [rip + empty]
	lea	rdx, [rbx + 40]			# argv[4..]
	lea	r10, [rbx + rcx*8 + 16]		# envp
	mov	r8d, 0x1000			# AT_EMPTY_PATH
	mov	eax, 322			# execveat
	syscall
	lea	r15, [rip + s_exec]
fail:
	neg	rax
	mov	r12, rax			# errno
	mov	edi, r14d
	lea	rsi, [rip + prefix]
	mov	edx, 26				# len(prefix)
	mov	eax, 1				# write
	syscall
	mov	edi, r14d
	movzx	edx, byte ptr [r15]		# the step's length
	lea	rsi, [r15 + 1]
	mov	eax, 1				# write
	syscall
	mov	edi, r14d
	lea	rsi, [rip + errno]
	mov	edx, 8				# len(": errno ")
	mov	eax, 1				# write
	syscall
	sub	rsp, 16
	mov	rax, r12
	DIGITS3
	mov	byte ptr [rsp + 3], '"'
	mov	byte ptr [rsp + 4], '}'
	mov	byte ptr [rsp + 5], 10
	mov	edi, r14d
	mov	rsi, rsp
	mov	edx, 6
	mov	eax, 1				# write
	syscall
	mov	edi, 1
	mov	eax, 231			# exit_group
	syscall

# atoi: the decimal number at rdi (NUL-terminated) in rax.
atoi:
	xor	eax, eax
1:	movzx	ecx, byte ptr [rdi]
	test	ecx, ecx
	jz	2f
	sub	ecx, '0'
	imul	eax, eax, 10
	add	eax, ecx
	inc	rdi
	jmp	1b
2:	ret

empty:		.byte	0
prefix:		.ascii	"{\"error\":\"user namespace: "
errno:		.ascii	": errno "
s_setns:	.byte	5
		.ascii	"setns"
s_setresgid:	.byte	9
		.ascii	"setresgid"
s_setresuid:	.byte	9
		.ascii	"setresuid"
s_exec:		.byte	8
		.ascii	"execveat"
