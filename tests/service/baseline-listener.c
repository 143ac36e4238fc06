/*
 * The floor for vmcd's start-to-listening figure: a C program that does only what vmcd must
 * before READY=1 (create and listen on the unix socket, send READY=1 to NOTIFY_SOCKET), then
 * waits for SIGTERM and sends STOPPING=1. tests/service/start-time.sh times both the same way.
 *   baseline-listener SOCKET-PATH
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void notify(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len;
    int fd;

    if (!name || !*name || strlen(name) >= sizeof(sa.sun_path)) {
        return;
    }
    len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (sa.sun_path[0] == '@') {
        sa.sun_path[0] = '\0';
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        sendto(fd, state, strlen(state), 0, (struct sockaddr *)&sa,
               offsetof(struct sockaddr_un, sun_path) + len);
        close(fd);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    sigset_t set;
    int fd, sig;

    if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: baseline-listener SOCKET-PATH\n");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    strcpy(sa.sun_path, argv[1]);
    unlink(argv[1]);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        perror("baseline-listener");
        return 1;
    }
    notify("READY=1");
    sigwait(&set, &sig);
    notify("STOPPING=1");
    unlink(argv[1]);
    return 0;
}
