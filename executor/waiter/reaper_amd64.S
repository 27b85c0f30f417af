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
# under fd 3 the file "exit.tmp", then renames it to "exit" (not fsynced,
# as no runtime state is: executor/state.go, writeFileAtomic):
#   reconciled-exit 1\n
#   status N\n          (the raw wait status; absent if wait4 failed)
#   time SEC NSEC\n
#   followed by the counter file's bytes as read from offset 0.
# It exits 0, or 1 if the file could not be written.
#
# Started with "_RECONCILED_MONITOR=FLAGS" as its first environment
# variable it is the whole monitor instead (executor/spare.go, launch;
# the Go monitor, runMonitor, remains for user namespaces and joined
# namespaces): no Go runtime starts for it. Contract with launch:
#   FLAGS     the init's clone flags in decimal, followed by "c" when the
#             init is to be cloned into a cgroup2 directory: the creator
#             then sends one byte with its fd (SCM_RIGHTS) on fd 3
#   argv[1]   room for the container's ID (spaces), written there once
#             known, as the Go monitor's setTitle does
#   envp[1..] the init's environment
#   fd 0-2    the init's (/dev/null)
#   fd 3      the sync socket, handed on to the init
#   fd 4      the read end of the lifeline (see watchCreator)
#   fd 5      the runtime's binary, exec'd as the init ("reconciled-init")
#   fd 6      this program (closed)
# (or forked by the spawner, below, with the same descriptors). It clones
# the init (clone3, with CLONE_INTO_CGROUP when it got a cgroup;
# without it where the kernel refuses, then with clone where there is no
# clone3; CLONE_VM|CLONE_VFORK: the init shares its memory until its
# exec, so no page table is copied for it or freed at its exec), sends
# {"pid":N} or {"pid":N,"inCgroup":true} (or
# {"error":"start container init: STEP: errno NNN"}, then exits 1) on fd 3
# and closes it. It then reads the lifeline: the state directory and a
# newline, then, once the container is created, the OOM counter file's
# path (empty: none) and a newline and one byte, 1 (wait) or 2 (leave:
# exit, the caller's side reaps). EOF before that byte kills the init.
# Then it opens the state directory on fd 3 and the counter file on fd 4
# and is the reaper above; with no state directory (a spare never used)
# it only waits for the init and exits.
#
# Position-independent, no data but the strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.include "digits.inc"
	.globl _start
	.text
_start:
	mov	rax, [rsp]			# argc
	lea	rbx, [rsp + rax*8 + 16]		# envp
	mov	rsi, [rbx]
	test	rsi, rsi
	jz	reaper
	lea	rdi, [rip + monitor_env]
	mov	ecx, 20				# len("_RECONCILED_MONITOR=")
	repe cmpsb
	jne	reaper
	mov	rbp, rsp			# argc, argv..., 0, envp..., 0
	cmp	byte ptr [rsi], 's'
	je	spawner
	jmp	monitor				# rsi: the flags
reaper:
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

# The monitor (see the top): clones the init, reports it, follows the
# lifeline, then is the reaper. rbp: argc (the initial stack), rbx: envp,
# rsi: the flags. Frame:
#   [rsp]        struct clone_args (88 bytes; [rsp+88] a scratch word)
#   [rsp+96]     a 4-byte buffer (the cgroup byte, the child's errno)
#   [rsp+104]    the exec-failure pipe (read end, write end)
#   [rsp+112]    pollfd: the lifeline, the init's pidfd; [rsp+100] titled
#   [rsp+128]    struct msghdr, [rsp+192] its iovec, [rsp+208] cmsg
#   [rsp+240]    the init's argv
#   [rsp+256]    the message to the creator
#   [rsp+1024]   what the lifeline brought (8192 bytes)
monitor:
	mov	r14, rsi
	mov	edi, 6
	mov	eax, 3				# close(this program)
	syscall
	sub	rsp, 9216
	mov	rdi, rsp
	xor	eax, eax
	mov	ecx, 256
	rep stosb
	mov	rsi, r14
	xor	r12d, r12d
1:	movzx	eax, byte ptr [rsi]
	sub	eax, '0'
	cmp	eax, 9
	ja	2f
	imul	r12, r12, 10
	add	r12, rax
	inc	rsi
	jmp	1b
2:	mov	r13, -1				# the cgroup2 directory's fd: none
	cmp	byte ptr [rsi], 'c'
	jne	no_cgroup
	lea	rdi, [rsp + 128]
	lea	rsi, [rsp + 96]
	mov	edx, 1
	mov	ecx, 24				# CMSG_SPACE(4)
	call	msghdr_init
recv_again:
	mov	edi, 3
	lea	rsi, [rsp + 128]
	mov	edx, 0x40000000			# MSG_CMSG_CLOEXEC
	mov	eax, 47				# recvmsg
	syscall
	cmp	rax, -4				# EINTR
	je	recv_again
	lea	r15, [rip + s_recv]
	test	rax, rax
	jle	start_failed			# 0: the creator hung up (errno 0)
	cmp	qword ptr [rsp + 168], 20	# CMSG_LEN(4)
	jb	no_cgroup
	cmp	dword ptr [rsp + 216], 1	# SOL_SOCKET
	jne	no_cgroup
	cmp	dword ptr [rsp + 220], 1	# SCM_RIGHTS
	jne	no_cgroup
	mov	r13d, dword ptr [rsp + 224]
no_cgroup:
	mov	edi, 4				# the lifeline and the runtime's binary
	mov	esi, 2				# F_SETFD
	mov	edx, 1				# FD_CLOEXEC: not the init's
	mov	eax, 72				# fcntl
	syscall
	mov	edi, 5
	mov	esi, 2
	mov	edx, 1
	mov	eax, 72
	syscall
	lea	rdi, [rsp + 104]
	mov	esi, 0x80000			# O_CLOEXEC
	mov	eax, 293			# pipe2
	syscall
	lea	r15, [rip + s_pipe]
	test	rax, rax
	js	start_failed
	lea	rax, [rip + init_name]
	mov	[rsp + 240], rax		# argv: "reconciled-init", NULL
clone:
	# CLONE_VM|CLONE_VFORK, as posix_spawn: the init shares this
	# process's memory and stack until its exec, and this one sleeps
	# until then. No copy of the page tables is made for a child that
	# only execs, and none is torn down at its exec.
	mov	rax, r12
	or	rax, 0x4100			# CLONE_VM|CLONE_VFORK
	mov	[rsp], rax			# flags
	mov	qword ptr [rsp + 32], 17	# exit_signal: SIGCHLD
	test	r13, r13
	js	1f
	mov	rax, 0x200000000		# CLONE_INTO_CGROUP
	or	[rsp], rax
	mov	[rsp + 80], r13			# cgroup
1:	mov	rdi, rsp
	mov	esi, 88				# CLONE_ARGS_SIZE_VER2
	mov	eax, 435			# clone3
	syscall
	test	rax, rax
	jz	child
	jns	cloned
	cmp	rax, -38			# ENOSYS: no clone3 (before 5.3)
	je	legacy_clone
	lea	r15, [rip + s_clone3]
	test	r13, r13
	js	start_failed
	# Refused with CLONE_INTO_CGROUP (before 5.7): cloned without it,
	# the creator moves the init (it says inCgroup only when it was).
	call	close_cgroup
	jmp	clone
legacy_clone:
	call	close_cgroup
	mov	rdi, r12
	or	rdi, 0x4111			# CLONE_VM|CLONE_VFORK|SIGCHLD
	xor	esi, esi
	xor	edx, edx
	xor	r10d, r10d
	xor	r8d, r8d
	mov	eax, 56				# clone
	syscall
	test	rax, rax
	jz	child
	lea	r15, [rip + s_clone]
	js	start_failed
cloned:
	mov	r14, rax			# the init's PID
	mov	edi, [rsp + 108]
	mov	eax, 3				# close(the pipe's write end)
	syscall
1:	mov	edi, [rsp + 104]
	lea	rsi, [rsp + 96]
	mov	edx, 4
	xor	eax, eax			# read: EOF once the init exec'd
	syscall
	cmp	rax, -4
	je	1b
	mov	r15, rax
	mov	edi, [rsp + 104]
	mov	eax, 3
	syscall
	cmp	r15, 4
	jne	exec_ok
	mov	eax, [rsp + 96]			# the child's errno
	neg	rax
	lea	r15, [rip + s_exec]
	jmp	start_failed
exec_ok:
	test	r13, r13
	js	1f
	mov	edi, r13d
	mov	eax, 3				# close(the cgroup2 directory)
	syscall
1:	lea	rdi, [rsp + 256]
	lea	rsi, [rip + msg_pid]
	mov	ecx, msg_pid_end - msg_pid
	rep movsb
	mov	rax, r14
	call	itoa
	test	r13, r13
	js	1f
	lea	rsi, [rip + msg_in]
	mov	ecx, msg_in_end - msg_in
	rep movsb
1:	mov	word ptr [rdi], 0x0a7d		# "}\n"
	add	rdi, 2
	lea	rsi, [rsp + 256]
	mov	rdx, rdi
	sub	rdx, rsi
	call	send
	test	rax, rax
	jns	1f
	mov	edi, r14d			# nobody to tell: the init goes
	mov	esi, 9				# SIGKILL
	mov	eax, 62				# kill
	syscall
1:	mov	edi, r14d
	xor	esi, esi
	mov	eax, 434			# pidfd_open
	syscall
	mov	r15, rax			# < 0: none (before 5.3)
	mov	edi, 3
	mov	eax, 3				# close(the sync socket): the init has it
	syscall
	xor	ebx, ebx			# bytes read from the lifeline
	mov	dword ptr [rsp + 112], 4	# the lifeline, POLLIN
	mov	dword ptr [rsp + 116], 1
	mov	[rsp + 120], r15d		# the init's pidfd, POLLIN
	mov	dword ptr [rsp + 124], 1
watch:
	lea	rdi, [rsp + 112]
	mov	esi, 2
	test	r15, r15
	jns	1f
	mov	esi, 1
1:	mov	rdx, -1
	mov	eax, 7				# poll
	syscall
	cmp	rax, -4
	je	watch
	test	rax, rax
	js	decide
	cmp	word ptr [rsp + 118], 0		# the lifeline's revents
	je	decide				# the init exited
	lea	rsi, [rsp + rbx + 1024]
	mov	edx, 8192
	sub	edx, ebx
	jz	gone				# more than a state directory and a path
	mov	edi, 4
	xor	eax, eax			# read
	syscall
	cmp	rax, -4
	je	watch
	test	rax, rax
	jle	gone
	add	rbx, rax
	# The state directory: up to the first newline.
	lea	rdi, [rsp + 1024]
	mov	rcx, rbx
	mov	al, 10
	repne scasb
	jne	watch
	mov	r8, rdi				# past its newline
	cmp	byte ptr [rsp + 100], 0
	jne	titled
	mov	byte ptr [rsp + 100], 1
	mov	[rsp + 88], rcx
	# The title: its last element into argv[1], the rest of that cleared.
	lea	rsi, [r8 - 1]
	lea	rdx, [rsp + 1024]
1:	cmp	rsi, rdx
	je	2f
	cmp	byte ptr [rsi - 1], '/'
	je	2f
	dec	rsi
	jmp	1b
2:	mov	rdi, [rbp + 16]			# argv[1]
	test	rdi, rdi
	jz	5f
	lea	rdx, [r8 - 1]
3:	cmp	byte ptr [rdi], 0
	je	5f
	cmp	rsi, rdx
	jae	4f
	mov	al, [rsi]
	mov	[rdi], al
	inc	rsi
	inc	rdi
	jmp	3b
4:	mov	byte ptr [rdi], 0
	inc	rdi
	cmp	byte ptr [rdi], 0
	jne	4b
5:	mov	rcx, [rsp + 88]
	mov	rdi, r8
titled:
	# Created: the OOM counter file's path, a newline, then one byte.
	mov	al, 10
	repne scasb
	jne	watch
	test	rcx, rcx
	jz	watch
	cmp	byte ptr [rdi], 2		# leave: the caller's side reaps
	je	leave
	mov	byte ptr [r8 - 1], 0		# the state directory, terminated
	mov	byte ptr [rdi - 1], 0		# the path, terminated
	mov	r12, r8
	jmp	open_state
gone:
	# EOF (or an error) before "created": the creator died or gave up;
	# nothing of a half-made container keeps running unseen.
	mov	edi, r14d
	mov	esi, 9				# SIGKILL
	mov	eax, 62				# kill
	syscall
decide:
	# Not created: the exit is recorded if the container has a state
	# directory, without an OOM counter.
	test	rbx, rbx
	jz	only_wait
	lea	rdi, [rsp + 1024]
	mov	rcx, rbx
	mov	al, 10
	repne scasb
	jne	only_wait
	mov	byte ptr [rdi - 1], 0
	xor	r12d, r12d
open_state:
	test	r15, r15
	js	1f
	mov	edi, r15d
	mov	eax, 3				# close(the pidfd)
	syscall
1:	mov	rdi, -100			# AT_FDCWD
	lea	rsi, [rsp + 1024]
	mov	edx, 0x290000			# O_PATH|O_DIRECTORY|O_CLOEXEC
	xor	r10d, r10d
	mov	eax, 257			# openat
	syscall
	test	rax, rax
	js	only_wait
	mov	esi, 3
	call	move_fd
	test	r12, r12
	jz	no_oom
	cmp	byte ptr [r12], 0
	je	no_oom
	mov	rdi, -100
	mov	rsi, r12
	mov	edx, 0x80000			# O_RDONLY|O_CLOEXEC
	xor	r10d, r10d
	mov	eax, 257			# openat
	syscall
	test	rax, rax
	js	no_oom
	mov	esi, 4				# replaces the lifeline
	call	move_fd
	jmp	1f
no_oom:
	mov	edi, 4
	mov	eax, 3				# close(the lifeline)
	syscall
1:	mov	edi, 5
	mov	eax, 3				# close(the runtime's binary)
	syscall
	jmp	reaper
only_wait:
	# No state directory (a spare never used, or it cannot be opened):
	# nowhere to record the exit.
	mov	edi, r14d
	xor	esi, esi
	xor	edx, edx
	xor	r10d, r10d
	mov	eax, 61				# wait4(init)
	syscall
	cmp	rax, -4
	je	only_wait
leave:
	xor	edi, edi
	mov	eax, 231			# exit_group
	syscall

child:
	# The init: the runtime's binary, with envp[1..]. It runs on the
	# monitor's stack (CLONE_VM|CLONE_VFORK, the monitor asleep): it
	# only reads it, but for the errno it also sends on the pipe.
	mov	edi, 5
	lea	rsi, [rip + empty]
	lea	rdx, [rsp + 240]
	lea	r10, [rbx + 8]
	mov	r8d, 0x1000			# AT_EMPTY_PATH
	mov	eax, 322			# execveat
	syscall
	neg	eax
	mov	[rsp + 96], eax
	mov	edi, [rsp + 108]
	lea	rsi, [rsp + 96]
	mov	edx, 4
	mov	eax, 1				# write(the pipe, errno)
	syscall
	mov	edi, 127
	mov	eax, 231			# exit_group
	syscall

# The spawner (executor/spawner.go): started with "_RECONCILED_MONITOR=s",
# it forks monitors on request, so that the runtime neither forks its own
# large process nor execs a new program for each. Contract:
#   argv      "reconciled-spawner", then the monitors' argv[1] (as above)
#   envp[1..] the monitors' (as above)
#   fd 0-2    /dev/null, the monitors' and the inits'
#   fd 3      a SOCK_SEQPACKET socket to the runtime
#   fd 4, 5   closed; fd 6 this program (closed)
# A request is the monitor's flags (as in its environment, at most 63
# bytes) with three descriptors (SCM_RIGHTS): the sync socket, the
# lifeline's read end and the binary to exec as the init. It forks with
# CLONE_PARENT, so the monitor is the runtime's child as if it had started
# it, and answers the monitor's PID, or -errno, as a 4-byte int; then it
# closes what it got. EOF: the runtime is gone, and it exits. The child
# puts the three on 3, 4 and 5 (the runtime's socket is gone with that),
# closes everything above, starts a session of its own, renames argv[0]
# "reconciled-monitor" (as long) and is the monitor. Frame:
#   [rsp]        struct msghdr, [rsp+64] its iovec
#   [rsp+80]     cmsg (CMSG_SPACE(12)); the descriptors at [rsp+96]
#   [rsp+112]    the answer
#   [rsp+128]    the flags (64 bytes, the last stays 0)
spawner:
	mov	edi, 6
	mov	eax, 3				# close(this program)
	syscall
	sub	rsp, 192
sp_next:
	mov	rdi, rsp
	xor	eax, eax
	mov	ecx, 192
	rep stosb
	mov	rdi, rsp
	lea	rsi, [rsp + 128]
	mov	edx, 63				# the last byte stays 0
	mov	ecx, 32				# CMSG_SPACE(12)
	call	msghdr_init
sp_recv:
	mov	edi, 3
	mov	rsi, rsp
	mov	edx, 0x40000000			# MSG_CMSG_CLOEXEC
	mov	eax, 47				# recvmsg
	syscall
	cmp	rax, -4				# EINTR
	je	sp_recv
	test	rax, rax
	jle	leave				# EOF: the runtime is gone
	mov	rax, -22			# EINVAL: not three descriptors
	cmp	qword ptr [rsp + 80], 28	# CMSG_LEN(12)
	jne	sp_answer
	cmp	dword ptr [rsp + 88], 1		# SOL_SOCKET
	jne	sp_answer
	cmp	dword ptr [rsp + 92], 1		# SCM_RIGHTS
	jne	sp_answer
	mov	edi, 0x8011			# CLONE_PARENT|SIGCHLD: a fork
	xor	esi, esi
	xor	edx, edx
	xor	r10d, r10d
	xor	r8d, r8d
	mov	eax, 56				# clone
	syscall
	test	rax, rax
	jz	sp_child
sp_answer:
	mov	[rsp + 112], eax
1:	mov	edi, 3
	lea	rsi, [rsp + 112]
	mov	edx, 4
	mov	r10d, 0x4000			# MSG_NOSIGNAL
	xor	r8d, r8d
	xor	r9d, r9d
	mov	eax, 44				# sendto
	syscall
	cmp	rax, -4
	je	1b
	mov	edi, 4
	mov	esi, -1
	xor	edx, edx
	mov	eax, 436			# close_range(4, ~0U, 0): what came
	syscall
	jmp	sp_next
sp_child:
	# The three came on the lowest free numbers, in order (4, 5, 6 here):
	# each goes to a lower number than its own, and none lands on one
	# still to be moved.
	mov	edi, [rsp + 96]
	mov	esi, 3
	xor	edx, edx
	mov	eax, 292			# dup3(sync socket, 3, 0)
	syscall
	test	rax, rax
	js	sp_failed
	mov	edi, [rsp + 100]
	mov	esi, 4
	xor	edx, edx
	mov	eax, 292			# dup3(lifeline, 4, 0)
	syscall
	test	rax, rax
	js	sp_failed
	mov	edi, [rsp + 104]
	mov	esi, 5
	xor	edx, edx
	mov	eax, 292			# dup3(init binary, 5, 0)
	syscall
	test	rax, rax
	js	sp_failed
	mov	edi, 6
	mov	esi, -1
	xor	edx, edx
	mov	eax, 436			# close_range(6, ~0U, 0)
	syscall
	mov	eax, 112			# setsid
	syscall
	mov	rdi, [rbp + 8]			# argv[0]
	lea	rsi, [rip + monitor_name]
	mov	ecx, 18				# len("reconciled-monitor")
	rep movsb
	lea	rsi, [rsp + 128]
	jmp	monitor
sp_failed:
	mov	edi, 127
	mov	eax, 231			# exit_group
	syscall

# start_failed: rax is -errno, r15 the step (its length, then its name).
# Sends {"error":"start container init: STEP: errno N"} and exits 1.
start_failed:
	neg	rax
	mov	r12, rax
	lea	rdi, [rsp + 256]
	lea	rsi, [rip + err_prefix]
	mov	ecx, err_prefix_end - err_prefix
	rep movsb
	movzx	ecx, byte ptr [r15]
	lea	rsi, [r15 + 1]
	rep movsb
	lea	rsi, [rip + err_errno]
	mov	ecx, err_errno_end - err_errno
	rep movsb
	mov	rax, r12
	call	itoa
	mov	dword ptr [rdi], 0x0a7d22	# "}\n
	add	rdi, 3
	lea	rsi, [rsp + 256]
	mov	rdx, rdi
	sub	rdx, rsi
	call	send
	mov	edi, 1
	mov	eax, 231			# exit_group
	syscall

# close_cgroup closes the cgroup2 directory (r13) if there is one and
# clears it from the clone arguments. Clobbers rax, rcx, rdi, r11.
close_cgroup:
	test	r13, r13
	js	1f
	mov	edi, r13d
	mov	eax, 3				# close
	syscall
	mov	r13, -1
	mov	qword ptr [rsp + 88], 0		# [rsp + 80] in the caller: cgroup
1:	ret

# send writes rdx bytes at rsi to the sync socket (fd 3), without SIGPIPE
# when the creator is gone; rax: the result.
send:
	mov	edi, 3
	mov	r10d, 0x4000			# MSG_NOSIGNAL
	xor	r8d, r8d
	xor	r9d, r9d
	mov	eax, 44				# sendto
	syscall
	cmp	rax, -4
	je	send
	ret

# msghdr_init fills the zeroed struct msghdr at rdi for recvmsg into one
# buffer (rsi, rdx bytes) with room for rcx bytes of control data: its
# iovec at rdi+64, the control data at rdi+80. Clobbers rax.
msghdr_init:
	mov	[rdi + 64], rsi			# iov_base
	mov	[rdi + 72], rdx			# iov_len
	lea	rax, [rdi + 64]
	mov	[rdi + 16], rax			# msg_iov
	mov	qword ptr [rdi + 24], 1		# msg_iovlen
	lea	rax, [rdi + 80]
	mov	[rdi + 32], rax			# msg_control
	mov	[rdi + 40], rcx			# msg_controllen
	ret

# move_fd puts the descriptor in rax on esi (dup3, close) unless it is
# there already. Clobbers rax, rcx, rdx, rdi, r11, r8.
move_fd:
	cmp	eax, esi
	je	1f
	mov	r8, rax
	mov	edi, eax
	xor	edx, edx
	mov	eax, 292			# dup3
	syscall
	mov	edi, r8d
	mov	eax, 3				# close
	syscall
1:	ret

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

monitor_env:	.ascii	"_RECONCILED_MONITOR="
init_name:	.asciz	"reconciled-init"
monitor_name:	.ascii	"reconciled-monitor"
empty:		.byte	0
msg_pid:	.ascii	"{\"pid\":"
msg_pid_end:
msg_in:		.ascii	",\"inCgroup\":true"
msg_in_end:
err_prefix:	.ascii	"{\"error\":\"start container init: "
err_prefix_end:
err_errno:	.ascii	": errno "
err_errno_end:
s_recv:		.byte	7
		.ascii	"recvmsg"
s_pipe:		.byte	5
		.ascii	"pipe2"
s_clone3:	.byte	6
		.ascii	"clone3"
s_clone:	.byte	5
		.ascii	"clone"
s_exec:		.byte	8
		.ascii	"execveat"
