# The init: PID 1 of a container whose manifest says init: true, as
# docker's --init (tini) is. It runs the user program as its child,
# forwards every signal it can catch to that child (to the child alone, as
# tini does without -g), reaps every process that ends up its child
# (orphans, and processes of `reconciled exec` whose parent went away) and
# exits as the child did: its exit code, or 128+N if signal N killed it.
# When the child is gone the init exits; the kernel then kills what is left
# in the container's PID namespace.
#
# Contract with the waiter (waiter_amd64.S, which execs it from fd 4 when
# its path argument is empty) and executor/init.go:
#   argv[0]   the resolved path of the user program
#   argv[1..] the user program's argv
#   envp      the user program's environment
#   the signal mask is the one the user program is to start with
# If the fork or the program's exec fails it writes
# "reconciled init: fork|execve failed: errno NNN\n" to fd 2 (the
# container's log) and the container exits 127.
#
# It blocks every signal and takes them with rt_sigtimedwait (a PID 1 in a
# PID namespace drops unblocked signals it has no handler for); SIGKILL and
# SIGSTOP cannot be blocked or caught and act on the init itself. It is
# also a child subreaper, for a spec without a PID namespace.
# System calls: rt_sigprocmask, prctl, fork, rt_sigtimedwait, kill, wait4,
# execve, write, exit_group.
#
# Position-independent, no data but the strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.include "digits.inc"
	.globl _start
	.text
_start:
	mov	rbx, rsp			# argc, argv..., 0, envp..., 0
	sub	rsp, 192			# [rsp] all signals, [rsp+8] the old mask,
					# [rsp+16] siginfo (128 bytes), [rsp+144] status
	mov	qword ptr [rsp], -1
	mov	edi, 2				# SIG_SETMASK
	mov	rsi, rsp
	lea	rdx, [rsp + 8]
	mov	r10d, 8
	mov	eax, 14				# rt_sigprocmask
	syscall
	mov	edi, 36				# PR_SET_CHILD_SUBREAPER
	mov	esi, 1
	mov	eax, 157			# prctl
	syscall
	mov	eax, 57				# fork
	syscall
	test	rax, rax
	jz	child
	js	fork_failed
	mov	r12, rax			# the child
wait_signal:
	mov	rdi, rsp			# every signal
	lea	rsi, [rsp + 16]
	xor	edx, edx			# no timeout
	mov	r10d, 8
	mov	eax, 128			# rt_sigtimedwait
	syscall
	test	rax, rax
	js	wait_signal			# EINTR
	cmp	eax, 17				# SIGCHLD
	je	reap
	mov	rdi, r12
	mov	esi, eax
	mov	eax, 62				# kill(child, signal); it may be gone: no matter
	syscall
	jmp	wait_signal
reap:
	mov	rdi, -1				# any child
	lea	rsi, [rsp + 144]
	mov	edx, 1				# WNOHANG
	xor	r10d, r10d
	mov	eax, 61				# wait4
	syscall
	cmp	rax, -4				# EINTR
	je	reap
	test	rax, rax
	jle	wait_signal			# none left to reap now, or no child at all
	cmp	rax, r12
	jne	reap				# an orphan: reaped, look for more
	mov	eax, dword ptr [rsp + 144]
	mov	edi, eax
	and	edi, 0x7f			# the signal that killed it, 0 if it exited
	jz	exited
	add	edi, 128
	jmp	exit
exited:
	shr	eax, 8
	movzx	edi, al				# its exit code
exit:
	mov	eax, 231			# exit_group
	syscall

child:
	mov	edi, 2				# SIG_SETMASK: the mask it came with
	lea	rsi, [rsp + 8]
	xor	edx, edx
	mov	r10d, 8
	mov	eax, 14				# rt_sigprocmask
	syscall
	mov	rcx, [rbx]			# argc
	mov	rdi, [rbx + 8]			# path
	lea	rsi, [rbx + 16]			# argv
	lea	rdx, [rbx + rcx*8 + 16]		# envp
	mov	eax, 59				# execve
	syscall
	lea	rsi, [rip + execmsg]
	mov	edx, 38				# len("reconciled init: execve failed: errno ")
	jmp	report
fork_failed:
	lea	rsi, [rip + forkmsg]
	mov	edx, 36				# len("reconciled init: fork failed: errno ")
report:
	neg	rax
	mov	r13, rax			# errno
	mov	edi, 2				# write(2, msg, len)
	mov	eax, 1
	syscall
	mov	rax, r13
	DIGITS3
	mov	byte ptr [rsp + 3], 10
	mov	edi, 2
	mov	rsi, rsp
	mov	edx, 4
	mov	eax, 1				# write
	syscall
	mov	edi, 127
	mov	eax, 231			# exit_group
	syscall
execmsg: .ascii	"reconciled init: execve failed: errno "
forkmsg: .ascii	"reconciled init: fork failed: errno "
