# The probe server: runs the commands of a container's exec health probes
# (spec.health.exec, an image's HEALTHCHECK) as its children, so that a
# probe costs a fork and an exec instead of a start of reconciled's exec
# stage. It is started once per probed run of a container through that
# exec stage (executor.ExecOptions.ProbeServer), so it has what any
# process exec'd into the container has: its namespaces and cgroup, user,
# capabilities, no_new_privs, seccomp filter, rlimits, cwd and environment;
# its children inherit all of it.
#
# Contract with executor/exec.go and internal/daemon/probe.go:
#   fd 0      a SOCK_SEQPACKET socket to the daemon. A request is one
#             message: the command's argv, each string NUL-terminated, at
#             most 4095 bytes and 64 strings. The reply is 4 bytes: the
#             child's wait status (wait4), or -errno when the fork failed
#             or the request had no argv[0] (-EINVAL).
#   fd 1, 2   where the children's stdout and stderr go (a pipe the daemon
#             reads).
#   envp      the children's environment; its PATH finds argv[0] when that
#             has no '/' (default /usr/local/sbin:/usr/local/bin:
#             /usr/sbin:/usr/bin:/sbin:/bin, as the exec stage's).
# A child asks for SIGKILL when the server dies (PR_SET_PDEATHSIG) and
# checks it was not orphaned before that: killing the server (the daemon
# does on a probe's timeout) kills the probe's command. A command that
# cannot be run writes "reconciled probe: cannot run ARGV0\n" to fd 2 and
# exits 127, as a shell does. The server exits when fd 0 reads EOF.
# System calls: read, write, close, getpid, getppid, fork, prctl, execve,
# wait4, exit_group.
#
# Position-independent, no data but the strings after the code.
# Regenerate the Go bytes with: go generate ./executor/waiter

	.intel_syntax noprefix
	.globl _start
	.text

	.set	REQ, 0				# [rsp]        the request (4096)
	.set	ARGV, 4096			# [rsp + 4096] argv pointers (65 * 8)
	.set	PATHBUF, 4624			# [rsp + 4624] a candidate path (4096)
	.set	STATUS, 8720			# [rsp + 8720] the reply (8)
	.set	FRAME, 8736

_start:
	mov	rbx, rsp			# argc, argv..., 0, envp..., 0
	mov	rcx, [rbx]
	lea	r14, [rbx + rcx*8 + 16]		# envp
	sub	rsp, FRAME
	mov	eax, 39				# getpid
	syscall
	mov	r15, rax			# the server, for the children's check

serve:
	xor	edi, edi			# read(0, req, 4095)
	lea	rsi, [rsp + REQ]
	mov	edx, 4095
	xor	eax, eax
	syscall
	cmp	rax, -4				# EINTR
	je	serve
	test	rax, rax
	jle	done				# EOF or an error: the daemon is gone
	mov	byte ptr [rsp + rax], 0		# a last string without its NUL ends here
	lea	rsi, [rsp + REQ]		# the next string
	lea	r8, [rsp + rax]			# the end
	lea	rdi, [rsp + ARGV]
	xor	ecx, ecx			# argc
split:
	cmp	rsi, r8
	jae	split_done
	cmp	ecx, 64
	jae	split_done
	mov	[rdi + rcx*8], rsi
	inc	ecx
skip:
	lodsb					# al = [rsi++]
	test	al, al
	jnz	skip
	jmp	split
split_done:
	mov	qword ptr [rdi + rcx*8], 0
	test	ecx, ecx
	jz	empty
	mov	rax, [rdi]
	cmp	byte ptr [rax], 0
	jne	spawn
empty:
	mov	rax, -22			# EINVAL: nothing to run (no argv[0])
	jmp	reply

spawn:
	mov	eax, 57				# fork
	syscall
	test	rax, rax
	jz	child
	js	reply				# -errno
	mov	r12, rax
wait:
	mov	rdi, r12			# wait4(child, &status, 0, 0)
	lea	rsi, [rsp + STATUS]
	xor	edx, edx
	xor	r10d, r10d
	mov	eax, 61
	syscall
	cmp	rax, -4				# EINTR
	je	wait
	test	rax, rax
	js	reply				# -errno (no such child: cannot happen)
	mov	eax, dword ptr [rsp + STATUS]
reply:
	mov	dword ptr [rsp + STATUS], eax
	xor	edi, edi			# write(0, &status, 4)
	lea	rsi, [rsp + STATUS]
	mov	edx, 4
	mov	eax, 1
	syscall
	jmp	serve
done:
	xor	edi, edi
	mov	eax, 231			# exit_group(0)
	syscall

child:
	mov	edi, 1				# PR_SET_PDEATHSIG
	mov	esi, 9				# SIGKILL
	mov	eax, 157			# prctl
	syscall
	mov	eax, 110			# getppid
	syscall
	cmp	rax, r15
	jne	orphan				# the server died before the prctl
	xor	edi, edi			# close(0): the daemon's socket is not the command's
	mov	eax, 3
	syscall
	mov	rbx, [rsp + ARGV]		# argv[0]
	mov	rdi, rbx
has_slash:
	mov	al, [rdi]
	test	al, al
	jz	search
	inc	rdi
	cmp	al, '/'
	jne	has_slash
	mov	rdi, rbx			# a path: execve(argv[0], argv, envp)
	call	try
	jmp	cannot

search:
	mov	rsi, r14			# find PATH= in envp
find_path:
	mov	rdx, [rsi]
	test	rdx, rdx
	jz	default_path
	add	rsi, 8
	cmp	dword ptr [rdx], 0x48544150	# "PATH"
	jne	find_path
	cmp	byte ptr [rdx + 4], '='
	jne	find_path
	lea	r13, [rdx + 5]
	jmp	next_dir
default_path:
	lea	r13, [rip + defpath]
next_dir:					# r13: the rest of PATH
	lea	rdi, [rsp + PATHBUF]
	lea	r9, [rsp + PATHBUF + 4000]	# room for the directory
copy_dir:
	mov	al, [r13]
	test	al, al
	jz	dir_end
	inc	r13
	cmp	al, ':'
	je	dir_sep
	cmp	rdi, r9
	jae	copy_dir			# too long: cut (the exec then fails)
	stosb
	jmp	copy_dir
dir_sep:
	mov	r10b, 1				# more directories follow
	jmp	join
dir_end:
	xor	r10d, r10d			# the last directory
join:
	lea	rax, [rsp + PATHBUF]
	cmp	rdi, rax
	je	add_name			# an empty entry is the cwd: the bare name
	mov	byte ptr [rdi], '/'
	inc	rdi
add_name:
	mov	rsi, rbx
	lea	r9, [rsp + PATHBUF + 4095]
copy_name:
	cmp	rdi, r9
	jae	name_end
	lodsb
	stosb
	test	al, al
	jnz	copy_name
name_end:
	mov	byte ptr [rdi], 0
	lea	rdi, [rsp + PATHBUF]
	call	try				# keeps r10 (execve takes three arguments)
	test	r10b, r10b
	jnz	next_dir

cannot:
	mov	edi, 2				# write(2, "reconciled probe: cannot run ")
	lea	rsi, [rip + cannotmsg]
	mov	edx, 29
	mov	eax, 1
	syscall
	mov	rsi, rbx			# argv[0]
	xor	edx, edx
strlen:
	cmp	byte ptr [rsi + rdx], 0
	je	strlen_done
	inc	rdx
	jmp	strlen
strlen_done:
	mov	edi, 2
	mov	eax, 1
	syscall
	mov	edi, 2
	lea	rsi, [rip + newline]
	mov	edx, 1
	mov	eax, 1
	syscall
	mov	edi, 127
	mov	eax, 231			# exit_group(127)
	syscall
orphan:
	mov	edi, 137			# as if SIGKILLed
	mov	eax, 231
	syscall

# try: execve(rdi, argv, envp); returns only on failure.
try:
	lea	rsi, [rsp + 8 + ARGV]
	mov	rdx, r14
	mov	eax, 59				# execve
	syscall
	ret

cannotmsg:
	.ascii	"reconciled probe: cannot run "
newline:
	.ascii	"\n"
defpath:
	.asciz	"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
