/* peakrss CMD [ARGS...]: runs CMD with fork (not vfork) and prints its peak
 * RSS in KiB (ru_maxrss) on fd 3, exiting with its status. A Go program
 * cannot measure this itself: it starts children with vfork, and the kernel
 * then counts the Go parent's RSS as the child's peak. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: peakrss CMD [ARGS...]\n"); return 2; }
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 2; }
  /* The child must not keep fd 3: a created container would inherit it and
   * hold the result pipe open. */
  if (pid == 0) { close(3); execvp(argv[1], argv + 1); perror(argv[1]); _exit(127); }
  int status; struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
  dprintf(3, "%ld\n", ru.ru_maxrss);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
