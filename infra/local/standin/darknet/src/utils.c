/* Helpers as darknet has them: file errors that end the process, flags taken out of argv, wall-clock time. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "darknet.h"

/* Per training iteration, so a run takes long enough to watch (SPOTTER_STANDIN_ITERATION_SECONDS). */
#define DEFAULT_ITERATION_SECONDS 0.02

void file_error(const char *s)
{
    fprintf(stderr, "Couldn't open file: %s\n", s);
    exit(EXIT_FAILURE);
}

void error(const char *s)
{
    fprintf(stderr, "Darknet error location: %s\n", s);
    exit(EXIT_FAILURE);
}

double what_time_is_it_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

void standin_sleep(void)
{
    const char *env = getenv("SPOTTER_STANDIN_ITERATION_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_ITERATION_SECONDS;
    if (seconds <= 0) return;
    struct timespec pause;
    pause.tv_sec = (time_t)seconds;
    pause.tv_nsec = (long)((seconds - pause.tv_sec) * 1e9);
    nanosleep(&pause, NULL);
}

/* darknet's del_arg: the flag leaves argv, later positions move up, argc stays as it was. */
static void del_arg(int argc, char **argv, int index)
{
    int i;
    for (i = index; i < argc - 1; ++i) argv[i] = argv[i + 1];
    argv[i] = 0;
}

int find_arg(int argc, char **argv, const char *arg)
{
    int i;
    for (i = 0; i < argc; ++i) {
        if (!argv[i]) continue;
        if (0 == strcmp(argv[i], arg)) {
            del_arg(argc, argv, i);
            return 1;
        }
    }
    return 0;
}

int find_int_arg(int argc, char **argv, const char *arg, int def)
{
    int i;
    for (i = 0; i < argc - 1; ++i) {
        if (!argv[i]) continue;
        if (0 == strcmp(argv[i], arg)) {
            def = atoi(argv[i + 1]);
            del_arg(argc, argv, i);
            del_arg(argc, argv, i);
            break;
        }
    }
    return def;
}

char *find_char_arg(int argc, char **argv, const char *arg, char *def)
{
    int i;
    for (i = 0; i < argc - 1; ++i) {
        if (!argv[i]) continue;
        if (0 == strcmp(argv[i], arg)) {
            def = argv[i + 1];
            del_arg(argc, argv, i);
            del_arg(argc, argv, i);
            break;
        }
    }
    return def;
}

/* "cfg/yolov4-custom.cfg" -> "yolov4-custom": the stem darknet names its backup weights after. */
char *basecfg(const char *cfgfile)
{
    const char *start = strrchr(cfgfile, '/');
    start = start ? start + 1 : cfgfile;
    char *base = strdup(start);
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    return base;
}
