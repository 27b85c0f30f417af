#include "textflag.h"

// shippedEntry is the ELF entry point of reconciled as packaging/build.sh
// links it (-E): it runs before the Go runtime. A process started as one
// of the container stages (_RECONCILED_STAGE=... in its environment), as
// `reconciled runtime ...` or as reconciled-runc is given the lean build
// appended to the file instead (see stage.go): its
// PT_LOAD segments are mapped from this same file, from where the trailer
// says, at the addresses it was linked for (packaging/build.sh links it
// far above this binary's), the auxiliary vector is pointed at it, and its
// entry point is jumped to with the stack as the kernel left it. Nothing
// is copied: the pages are this file's, shared in the page cache. Any
// other process, and any stage process for which something here fails,
// goes on to this binary's own Go entry point (_rt0_amd64_linux), which
// runs every command and every stage as well, only slower to start.
//
// Scratch space is below the kernel's initial stack pointer (R12):
//	0(SP)     struct stat (144 bytes)
//	256(SP)   the trailer (48 bytes)
//	320(SP)   the stage binary's ELF header (64 bytes)
//	384(SP)   its program headers (16 at most, 56 bytes each)
//	1280(SP)  the address its file offset 0 is mapped at (AT_PHDR)
// Registers kept across system calls (which clobber AX, CX and R11):
// R12 the initial stack pointer, R13 the stage binary's offset in the
// file, R14 a count, R15 the file's descriptor, BX a program header.
TEXT ·shippedEntry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	SP, R12
	// envp = SP + 8*(argc+2): look for the stage variable.
	MOVQ	0(R12), AX
	LEAQ	16(R12)(AX*8), R8

env:
	MOVQ	0(R8), SI
	TESTQ	SI, SI
	JZ	args
	LEAQ	·stageEnvPrefix(SB), DI
	MOVQ	$18, CX
	CALL	bytesEqual<>(SB)
	TESTL	AX, AX
	JNZ	load
	ADDQ	$8, R8
	JMP	env

args:
	// `reconciled runtime ...`: argv[1] is "runtime".
	MOVQ	0(R12), AX
	CMPQ	AX, $2
	JLT	runc
	MOVQ	16(R12), SI
	LEAQ	·runtimeArg(SB), DI
	MOVQ	$8, CX // with its NUL
	CALL	bytesEqual<>(SB)
	TESTL	AX, AX
	JNZ	load

runc:
	// reconciled-runc: the base name of argv[0].
	MOVQ	0(R12), AX
	CMPQ	AX, $1
	JLT	full
	MOVQ	8(R12), SI
	MOVQ	SI, DI

base:
	MOVBLZX	0(SI), AX
	TESTL	AX, AX
	JZ	basedone
	INCQ	SI
	CMPL	AX, $0x2f // '/'
	JNE	base
	MOVQ	SI, DI
	JMP	base

basedone:
	MOVQ	DI, SI
	LEAQ	·runcName(SB), DI
	MOVQ	$16, CX // with its NUL
	CALL	bytesEqual<>(SB)
	TESTL	AX, AX
	JZ	full

load:
	SUBQ	$2048, SP
	MOVQ	$0, 1280(SP)

	// fd = openat(AT_FDCWD, "/proc/self/exe", O_RDONLY|O_CLOEXEC)
	MOVQ	$257, AX
	MOVQ	$-100, DI
	LEAQ	·procSelfExe(SB), SI
	MOVQ	$0x80000, DX
	MOVQ	$0, R10
	SYSCALL
	CMPQ	AX, $0
	JLT	fail
	MOVQ	AX, R15

	// fstat(fd, 0(SP)): st_size at 48
	MOVQ	$5, AX
	MOVQ	R15, DI
	MOVQ	SP, SI
	SYSCALL
	CMPQ	AX, $0
	JNE	failclose
	MOVQ	48(SP), BX
	CMPQ	BX, $48
	JLT	failclose

	// pread64(fd, 256(SP), 48, size-48): the trailer
	MOVQ	$17, AX
	MOVQ	R15, DI
	LEAQ	256(SP), SI
	MOVQ	$48, DX
	LEAQ	-48(BX), R10
	SYSCALL
	CMPQ	AX, $48
	JNE	failclose
	MOVQ	256(SP), AX
	MOVQ	·stageMagicBytes(SB), CX
	CMPQ	AX, CX
	JNE	failclose
	MOVQ	264(SP), AX
	MOVQ	·stageMagicBytes+8(SB), CX
	CMPQ	AX, CX
	JNE	failclose

	// Two numbers of 16 lower-case hex digits: offset (R13), length (R14).
	LEAQ	272(SP), SI
	XORQ	R9, R9
	XORQ	CX, CX

hex:
	MOVBLZX	0(SI)(CX*1), AX
	CMPL	AX, $0x30 // '0'
	JLT	failclose
	CMPL	AX, $0x39 // '9'
	JGT	hexalpha
	SUBL	$0x30, AX
	JMP	hexdigit

hexalpha:
	CMPL	AX, $0x61 // 'a'
	JLT	failclose
	CMPL	AX, $0x66 // 'f'
	JGT	failclose
	SUBL	$0x57, AX // 'a' - 10

hexdigit:
	SHLQ	$4, R9
	ORQ	AX, R9
	INCQ	CX
	CMPQ	CX, $16
	JNE	hexnext
	MOVQ	R9, R13
	XORQ	R9, R9

hexnext:
	CMPQ	CX, $32
	JLT	hex
	MOVQ	R9, R14

	// offset > 0, page-aligned, offset+length == size-48
	CMPQ	R13, $0
	JLE	failclose
	TESTQ	$4095, R13
	JNZ	failclose
	MOVQ	R13, AX
	ADDQ	R14, AX
	SUBQ	$48, BX
	CMPQ	AX, BX
	JNE	failclose

	// pread64(fd, 320(SP), 64, offset): the ELF header
	MOVQ	$17, AX
	MOVQ	R15, DI
	LEAQ	320(SP), SI
	MOVQ	$64, DX
	MOVQ	R13, R10
	SYSCALL
	CMPQ	AX, $64
	JNE	failclose
	MOVL	320(SP), AX
	CMPL	AX, $0x464c457f // "\x7fELF"
	JNE	failclose
	MOVWLZX	336(SP), AX // e_type
	CMPL	AX, $2 // ET_EXEC
	JNE	failclose
	MOVWLZX	374(SP), AX // e_phentsize
	CMPL	AX, $56
	JNE	failclose
	MOVWLZX	376(SP), R14 // e_phnum
	CMPQ	R14, $1
	JLT	failclose
	CMPQ	R14, $16
	JGT	failclose

	// pread64(fd, 384(SP), 56*phnum, offset+e_phoff)
	MOVQ	R14, DX
	SHLQ	$6, DX
	MOVQ	R14, AX
	SHLQ	$3, AX
	SUBQ	AX, DX
	MOVQ	$17, AX
	MOVQ	R15, DI
	LEAQ	384(SP), SI
	MOVQ	R13, R10
	ADDQ	352(SP), R10 // e_phoff
	SYSCALL
	CMPQ	AX, DX
	JNE	failclose

	LEAQ	384(SP), BX

phdr:
	MOVL	0(BX), AX
	CMPL	AX, $1 // PT_LOAD
	JNE	phnext

	// prot from p_flags (PF_R 4, PF_W 2, PF_X 1)
	MOVL	4(BX), AX
	XORL	DX, DX
	TESTL	$4, AX
	JZ	noread
	ORL	$1, DX // PROT_READ

noread:
	TESTL	$2, AX
	JZ	nowrite
	ORL	$2, DX // PROT_WRITE

nowrite:
	TESTL	$1, AX
	JZ	noexec
	ORL	$4, DX // PROT_EXEC

noexec:
	// vaddr and offset agree modulo the page size
	MOVQ	16(BX), AX
	SUBQ	8(BX), AX
	TESTQ	$4095, AX
	JNZ	failclose
	// remember where file offset 0 is mapped (the ELF header and the
	// program headers after it)
	CMPQ	8(BX), $0
	JNE	notfirst
	MOVQ	16(BX), AX
	MOVQ	AX, 1280(SP)

notfirst:
	CMPQ	32(BX), $0 // p_filesz
	JEQ	bss

	// mmap(vaddr&^4095, filesz+pad, prot, MAP_PRIVATE|MAP_FIXED_NOREPLACE, fd, offset+p_offset-pad)
	MOVQ	16(BX), AX
	MOVQ	AX, CX
	ANDQ	$4095, CX
	MOVQ	AX, DI
	SUBQ	CX, DI
	MOVQ	32(BX), SI
	ADDQ	CX, SI
	MOVQ	$0x100002, R10
	MOVQ	R15, R8
	MOVQ	8(BX), R9
	SUBQ	CX, R9
	ADDQ	R13, R9
	MOVQ	$9, AX
	SYSCALL
	CMPQ	AX, DI
	JNE	failclose

bss:
	// memsz > filesz: zero the rest of the last file page, map anonymous
	// pages for the remainder.
	MOVQ	16(BX), DI
	ADDQ	32(BX), DI // file end
	MOVQ	16(BX), R9
	ADDQ	40(BX), R9 // memory end
	CMPQ	R9, DI
	JLE	phnext
	TESTL	$2, DX
	JZ	failclose
	MOVQ	DI, SI
	ADDQ	$4095, SI
	ANDQ	$-4096, SI // page end
	CMPQ	32(BX), $0
	JNE	zero
	MOVQ	DI, SI
	ANDQ	$-4096, SI // no file part: all anonymous, from its first page
	JMP	nozero

zero:
	MOVQ	SI, CX
	CMPQ	R9, SI
	JGE	zerolen
	MOVQ	R9, CX

zerolen:
	SUBQ	DI, CX
	XORL	AX, AX
	CLD
	REP; STOSB

nozero:
	ADDQ	$4095, R9
	ANDQ	$-4096, R9
	CMPQ	R9, SI
	JLE	phnext
	// mmap(page end, memory end - page end, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)
	MOVQ	SI, DI
	MOVQ	R9, SI
	SUBQ	DI, SI
	MOVQ	$0x100022, R10
	MOVQ	$-1, R8
	XORQ	R9, R9
	MOVQ	$9, AX
	SYSCALL
	CMPQ	AX, DI
	JNE	failclose

phnext:
	ADDQ	$56, BX
	DECQ	R14
	JNZ	phdr

	// close(fd)
	MOVQ	$3, AX
	MOVQ	R15, DI
	SYSCALL

	// Point AT_PHDR, AT_PHNUM and AT_ENTRY at the stage binary.
	MOVQ	0(R12), AX
	LEAQ	16(R12)(AX*8), R8

envskip:
	MOVQ	0(R8), AX
	ADDQ	$8, R8
	TESTQ	AX, AX
	JNZ	envskip

aux:
	MOVQ	0(R8), AX
	TESTQ	AX, AX
	JZ	auxdone
	CMPQ	AX, $3 // AT_PHDR
	JNE	auxphnum
	MOVQ	1280(SP), CX
	TESTQ	CX, CX
	JZ	auxnext
	ADDQ	352(SP), CX
	MOVQ	CX, 8(R8)
	JMP	auxnext

auxphnum:
	CMPQ	AX, $5 // AT_PHNUM
	JNE	auxentry
	MOVWLZX	376(SP), CX
	MOVQ	CX, 8(R8)
	JMP	auxnext

auxentry:
	CMPQ	AX, $9 // AT_ENTRY
	JNE	auxnext
	MOVQ	344(SP), CX
	MOVQ	CX, 8(R8)

auxnext:
	ADDQ	$16, R8
	JMP	aux

auxdone:
	MOVQ	344(SP), AX // e_entry
	MOVQ	R12, SP
	XORL	DX, DX
	JMP	AX

failclose:
	MOVQ	$3, AX
	MOVQ	R15, DI
	SYSCALL

fail:
	MOVQ	R12, SP

full:
	JMP	_rt0_amd64_linux(SB)

// bytesEqual<> sets AX to 1 if the CX bytes at SI and DI are equal, else
// to 0, comparing byte by byte: a shorter string stops at its NUL, and
// nothing past it is read. It changes SI, DI, CX and DX.
TEXT bytesEqual<>(SB),NOSPLIT|NOFRAME,$0
next:
	MOVBLZX	0(SI), AX
	MOVBLZX	0(DI), DX
	CMPL	AX, DX
	JNE	differ
	INCQ	SI
	INCQ	DI
	DECQ	CX
	JNZ	next
	MOVL	$1, AX
	RET

differ:
	XORL	AX, AX
	RET

DATA ·procSelfExe+0(SB)/8, $"/proc/se"
DATA ·procSelfExe+8(SB)/8, $"lf/exe\x00\x00"
GLOBL ·procSelfExe(SB), RODATA|NOPTR, $16

DATA ·stageEnvPrefix+0(SB)/8, $"_RECONCI"
DATA ·stageEnvPrefix+8(SB)/8, $"LED_STAG"
DATA ·stageEnvPrefix+16(SB)/8, $"E=\x00\x00\x00\x00\x00\x00"
GLOBL ·stageEnvPrefix(SB), RODATA|NOPTR, $24

DATA ·runtimeArg+0(SB)/8, $"runtime\x00"
GLOBL ·runtimeArg(SB), RODATA|NOPTR, $8

DATA ·runcName+0(SB)/8, $"reconcil"
DATA ·runcName+8(SB)/8, $"ed-runc\x00"
GLOBL ·runcName(SB), RODATA|NOPTR, $16

DATA ·stageMagicBytes+0(SB)/8, $"RECONCIL"
DATA ·stageMagicBytes+8(SB)/8, $"EDSTAGE1"
GLOBL ·stageMagicBytes(SB), RODATA|NOPTR, $16
