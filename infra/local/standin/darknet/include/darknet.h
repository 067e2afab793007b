/* Spotter's stand-in for AlexeyAB/darknet on machines without CUDA: the command line, files and console output of
 * `darknet detector train|map`, with losses and mAP that follow a fixed, deterministic curve instead of training. */
#ifndef DARKNET_STANDIN_H
#define DARKNET_STANDIN_H

#ifndef STANDIN_BUILD
#define STANDIN_BUILD "GPU=0"
#endif

#define MAX_STEPS 16

/* key=value lines of a .data file, or of one [section] of a .cfg file */
typedef struct kvp {
    char *key;
    char *val;
    struct kvp *next;
} kvp;

typedef struct section {
    char *type;
    kvp *options;
    struct section *next;
} section;

typedef struct {
    int batch;
    int subdivisions;
    int width;
    int height;
    int channels;
    int max_batches;
    int burn_in;
    float learning_rate;
    float momentum;
    float decay;
    int steps[MAX_STEPS];
    float scales[MAX_STEPS];
    int nsteps;
    int classes;     /* of the last [yolo] layer, or -1 */
    int layers;      /* sections after [net] */
    int yolo_layers;
    section *sections;
} network;

/* option_list.c */
kvp *read_data_cfg(const char *filename);
section *read_cfg(const char *filename);
const char *option_find_str(kvp *l, const char *key, const char *def);
int option_find_int(kvp *l, const char *key, int def);
float option_find_float(kvp *l, const char *key, float def);
network parse_network_cfg(const char *filename);
char **get_labels(const char *filename, int *size);
int count_lines(const char *filename);

/* weights.c */
long long load_weights(const char *filename, int layers);
void save_weights(const char *filename, long long seen);

/* curve.c */
float standin_loss(int iteration, int max_batches);
float standin_class_ap(int iteration, int max_batches, int class_id);

/* utils.c */
void file_error(const char *s);
void error(const char *s);
double what_time_is_it_now(void);
void standin_sleep(void);
int find_arg(int argc, char **argv, const char *arg);
int find_int_arg(int argc, char **argv, const char *arg, int def);
char *find_char_arg(int argc, char **argv, const char *arg, char *def);
char *basecfg(const char *cfgfile);

/* detector.c */
void run_detector(int argc, char **argv);

#endif
