/* Reading darknet's text formats: `.data` (key = value), `.cfg` ([sections] of key=value), `.names` and image lists. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"

static char *strip(char *s)
{
    while (isspace((unsigned char)*s)) ++s;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) --end;
    *end = 0;
    return s;
}

static void option_insert(kvp **l, const char *key, const char *val)
{
    kvp *p = calloc(1, sizeof(kvp));
    p->key = strdup(key);
    p->val = strdup(val);
    p->next = NULL;
    while (*l) l = &(*l)->next;
    *l = p;
}

/* One "key=value" line into `l`; comments and blank lines are skipped, like darknet's read_option. */
static void read_option(char *line, kvp **l, const char *filename, int lineno)
{
    char *s = strip(line);
    if (!*s || *s == '#' || *s == ';') return;
    char *eq = strchr(s, '=');
    if (!eq) {
        fprintf(stderr, "Config file error line %d, could parse: %s\n", lineno, s);
        fprintf(stderr, "%s\n", filename);
        return;
    }
    *eq = 0;
    option_insert(l, strip(s), strip(eq + 1));
}

kvp *read_data_cfg(const char *filename)
{
    FILE *file = fopen(filename, "r");
    if (!file) file_error(filename);
    kvp *options = NULL;
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, file)) read_option(line, &options, filename, ++lineno);
    fclose(file);
    return options;
}

section *read_cfg(const char *filename)
{
    FILE *file = fopen(filename, "r");
    if (!file) file_error(filename);
    section *sections = NULL, **tail = &sections, *current = NULL;
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, file)) {
        ++lineno;
        char *s = strip(line);
        if (*s == '[') {
            current = calloc(1, sizeof(section));
            char *close = strchr(s, ']');
            if (close) *close = 0;
            current->type = strdup(s + 1);
            *tail = current;
            tail = &current->next;
        } else if (*s && *s != '#' && *s != ';') {
            if (!current) error("Config file error: options before the first [section]");
            read_option(s, &current->options, filename, lineno);
        }
    }
    fclose(file);
    return sections;
}

const char *option_find_str(kvp *l, const char *key, const char *def)
{
    const char *found = def;
    for (; l; l = l->next) {
        if (0 == strcmp(l->key, key)) found = l->val; /* the last occurrence wins */
    }
    return found;
}

int option_find_int(kvp *l, const char *key, int def)
{
    const char *v = option_find_str(l, key, NULL);
    return v ? atoi(v) : def;
}

float option_find_float(kvp *l, const char *key, float def)
{
    const char *v = option_find_str(l, key, NULL);
    return v ? (float)atof(v) : def;
}

static int count_csv(const char *s)
{
    if (!s || !*s) return 0;
    int n = 1;
    for (; *s; ++s) n += *s == ',';
    return n;
}

static void parse_csv_ints(const char *s, int *out, int max)
{
    int i = 0;
    while (s && *s && i < max) {
        out[i++] = atoi(s);
        s = strchr(s, ',');
        if (s) ++s;
    }
}

static void parse_csv_floats(const char *s, float *out, int max)
{
    int i = 0;
    while (s && *s && i < max) {
        out[i++] = (float)atof(s);
        s = strchr(s, ',');
        if (s) ++s;
    }
}

/* The [net] options training needs, and the checks darknet makes on [yolo] layers and the filters before them. */
network parse_network_cfg(const char *filename)
{
    network net;
    memset(&net, 0, sizeof net);
    net.sections = read_cfg(filename);
    section *s = net.sections;
    if (!s || (strcmp(s->type, "net") && strcmp(s->type, "network"))) error("First section must be [net] or [network]");
    kvp *o = s->options;
    net.batch = option_find_int(o, "batch", 1);
    net.subdivisions = option_find_int(o, "subdivisions", 1);
    net.width = option_find_int(o, "width", 0);
    net.height = option_find_int(o, "height", 0);
    net.channels = option_find_int(o, "channels", 3);
    net.max_batches = option_find_int(o, "max_batches", 0);
    net.burn_in = option_find_int(o, "burn_in", 0);
    net.learning_rate = option_find_float(o, "learning_rate", .001f);
    net.momentum = option_find_float(o, "momentum", .9f);
    net.decay = option_find_float(o, "decay", .0001f);
    const char *steps = option_find_str(o, "steps", NULL);
    net.nsteps = count_csv(steps);
    if (net.nsteps > MAX_STEPS) net.nsteps = MAX_STEPS;
    parse_csv_ints(steps, net.steps, net.nsteps);
    parse_csv_floats(option_find_str(o, "scales", NULL), net.scales, net.nsteps);
    net.classes = -1;
    if (net.batch < net.subdivisions || net.subdivisions < 1) error("batch must be a multiple of subdivisions");

    int last_filters = 0;
    for (s = s->next; s; s = s->next) {
        ++net.layers;
        if (0 == strcmp(s->type, "convolutional")) {
            last_filters = option_find_int(s->options, "filters", 1);
        } else if (0 == strcmp(s->type, "yolo")) {
            int classes = option_find_int(s->options, "classes", 20);
            const char *mask = option_find_str(s->options, "mask", NULL);
            int masks = mask ? count_csv(mask) : option_find_int(s->options, "num", 1);
            if (last_filters != (classes + 5) * masks) {
                printf("\n Error: l.outputs == params.inputs \n");
                printf("filters= in the [convolutional]-layer doesn't correspond to classes= or mask= in [yolo]-layer \n");
                error("l.outputs == params.inputs");
            }
            net.classes = classes;
            ++net.yolo_layers;
        }
    }
    return net;
}

char **get_labels(const char *filename, int *size)
{
    FILE *file = fopen(filename, "r");
    if (!file) file_error(filename);
    int cap = 16, n = 0;
    char **labels = malloc(cap * sizeof(char *));
    char line[4096];
    while (fgets(line, sizeof line, file)) {
        char *s = strip(line);
        if (!*s) continue;
        if (n == cap) labels = realloc(labels, (cap *= 2) * sizeof(char *));
        labels[n++] = strdup(s);
    }
    fclose(file);
    *size = n;
    return labels;
}

int count_lines(const char *filename)
{
    FILE *file = fopen(filename, "r");
    if (!file) file_error(filename);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, file)) {
        char *s = strip(line);
        if (*s) ++n;
    }
    fclose(file);
    return n;
}
