/* `darknet detector train` and `darknet detector map`, printing what AlexeyAB's detector.c prints, in its format. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"

/* Boxes per validation image the stand-in pretends to find. */
#define TRUTHS_PER_IMAGE 2

static void print_network(const network *net, int train)
{
    printf("net.optimized_memory = 0 \n");
    printf("mini_batch = %d, batch = %d, time_steps = 1, train = %d \n",
           train ? net->batch / net->subdivisions : 1, train ? net->batch : 1, train);
    printf("   layer   filters  size/strd(dim)    input           output\n");
    int i = 0;
    for (section *s = net->sections->next; s; s = s->next, ++i) {
        if (0 == strcmp(s->type, "convolutional")) {
            int filters = option_find_int(s->options, "filters", 1);
            int size = option_find_int(s->options, "size", 1);
            int stride = option_find_int(s->options, "stride", 1);
            printf("%4d conv  %5d      %2d x%2d/%2d\n", i, filters, size, size, stride);
        } else {
            printf("%4d %s\n", i, s->type);
        }
    }
    printf("Total BFLOPS %5.3f \n", 0.2f * net->layers);
    printf("avg_outputs = %d \n", 1000 * net->layers);
}

static void print_detection_layers(const network *net)
{
    int i = 0;
    for (section *s = net->sections->next; s; s = s->next, ++i) {
        if (0 == strcmp(s->type, "yolo")) printf(" Detection layer: %d - type = 28 \n", i);
    }
}

static float current_rate(const network *net, int iteration)
{
    if (iteration < net->burn_in) return net->learning_rate * powf((float)iteration / net->burn_in, 4);
    float rate = net->learning_rate;
    for (int i = 0; i < net->nsteps; ++i) {
        if (net->steps[i] > iteration) break;
        rate *= net->scales[i];
    }
    return rate;
}

/* validate_detector_map's report for the weights of `iteration`; returns the mean AP (0-1). */
static float validate_detector_map(const char *datacfg, const network *net, int iteration)
{
    kvp *options = read_data_cfg(datacfg);
    const char *valid_images = option_find_str(options, "valid", option_find_str(options, "train", "data/train.txt"));
    const char *name_list = option_find_str(options, "names", "data/names.list");
    int classes = option_find_int(options, "classes", 1);
    int names_size = 0;
    char **names = get_labels(name_list, &names_size);
    int images = count_lines(valid_images);
    if (names_size < classes) classes = names_size;

    printf("\n calculation mAP (mean average precision)...\n");
    print_detection_layers(net);
    printf("%d\n", images);
    int truths = images * TRUTHS_PER_IMAGE;
    printf(" detections_count = %d, unique_truth_count = %d  \n", truths * 3, truths);

    float sum_ap = 0;
    int tp_all = 0, fp_all = 0;
    for (int i = 0; i < classes; ++i) {
        float ap = standin_class_ap(iteration, net->max_batches, i);
        int class_truths = truths / (classes ? classes : 1);
        int tp = (int)(class_truths * (0.3f + 0.65f * ap));
        int fp = (int)(tp * (0.55f - 0.45f * ap) + 0.5f);
        tp_all += tp;
        fp_all += fp;
        sum_ap += ap;
        printf("class_id = %d, name = %s, ap = %2.2f%%   \t (TP = %d, FP = %d) \n", i, names[i], ap * 100, tp, fp);
    }
    float map = classes ? sum_ap / classes : 0;
    float precision = tp_all + fp_all ? (float)tp_all / (tp_all + fp_all) : 0;
    float recall = truths ? (float)tp_all / truths : 0;
    float f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
    printf("\n for conf_thresh = %1.2f, precision = %1.2f, recall = %1.2f, F1-score = %1.2f \n", 0.25, precision,
           recall, f1);
    printf(" for conf_thresh = %0.2f, TP = %d, FP = %d, FN = %d, average IoU = %2.2f %% \n", 0.25, tp_all, fp_all,
           truths - tp_all, 100 * (0.3f + 0.5f * map));
    printf("\n IoU threshold = %2.0f %%, used Area-Under-Curve for each unique Recall \n", 50.0);
    printf(" mean average precision (mAP@%0.2f) = %f, or %2.2f %% \n", 0.5, map, map * 100);
    fprintf(stderr, "Total Detection Time: %d Seconds\n", 0);
    printf("\nSet -points flag:\n");
    printf(" `-points 101` for MS COCO \n");
    printf(" `-points 11` for PascalVOC 2007 (uncomment `difficult` in voc.data) \n");
    printf(" `-points 0` (AUC) for ImageNet, PascalVOC 2010-2012, your custom dataset\n");
    fflush(stdout);
    return map;
}

static void save_named(const char *backup, const char *base, const char *suffix, long long seen)
{
    char buff[4096];
    snprintf(buff, sizeof buff, "%s/%s_%s.weights", backup, base, suffix);
    save_weights(buff, seen);
}

static void train_detector(const char *datacfg, const char *cfgfile, const char *weightfile, int ngpus, int clear,
                           int calc_map)
{
    kvp *options = read_data_cfg(datacfg);
    const char *train_images = option_find_str(options, "train", "data/train.txt");
    const char *valid_images = option_find_str(options, "valid", train_images);
    const char *backup_directory = option_find_str(options, "backup", "/backup/");
    network net = parse_network_cfg(cfgfile);
    char *base = basecfg(cfgfile);

    if (calc_map) {
        FILE *valid_file = fopen(valid_images, "r");
        if (!valid_file) {
            printf("\n Error: There is no %s file for mAP calculation!\n Don't use -map flag.\n Or set valid=%s in your %s "
                   "file. \n",
                   valid_images, train_images, datacfg);
            exit(-1);
        }
        fclose(valid_file);
        printf(" Prepare additional network for mAP calculation...\n");
        print_network(&net, 0);
        const char *name_list = option_find_str(options, "names", "data/names.list");
        int names_size = 0;
        get_labels(name_list, &names_size);
        if (net.classes >= 0 && net.classes != names_size) {
            printf("\n Error: in the file %s number of names %d that isn't equal to classes=%d in the file %s \n",
                   name_list, names_size, net.classes, cfgfile);
        }
    }
    printf("%s\n", base);
    print_network(&net, 1);

    long long seen = 0;
    if (weightfile) seen = load_weights(weightfile, net.layers);
    if (clear) seen = 0;
    int imgs = net.batch * ngpus;
    int iteration = (int)(seen / net.batch);
    net.learning_rate *= ngpus;
    if (net.max_batches <= 0) error("max_batches must be set in the [net] section");

    printf("Learning Rate: %g, Momentum: %g, Decay: %g\n", net.learning_rate, net.momentum, net.decay);
    print_detection_layers(&net);
    int train_images_num = count_lines(train_images);
    printf(" Create %d permanent cpu-threads \n", 6 * ngpus);
    fflush(stdout);

    float avg_loss = -1;
    float mean_average_precision = -1, best_map = -1;
    double avg_time = -1, alpha_time = 0.01;
    int iter_map = iteration, iter_save = iteration, iter_save_last = iteration;
    int save_every = net.max_batches < 10000 ? 1000 : 10000;
    while (iteration < net.max_batches) {
        double time = what_time_is_it_now();
        printf("Loaded: %lf seconds\n", 0.000040);
        standin_sleep();
        ++iteration;
        seen += imgs;
        float loss = standin_loss(iteration, net.max_batches);
        if (avg_loss < 0 || avg_loss != avg_loss) avg_loss = loss;
        avg_loss = avg_loss * .9f + loss * .1f;

        int calc_map_for_each = 4 * train_images_num / net.batch;
        if (calc_map_for_each < 100) calc_map_for_each = 100;
        int next_map_calc = iter_map + calc_map_for_each;
        if (next_map_calc < net.burn_in) next_map_calc = net.burn_in;
        if (calc_map) {
            printf("\n (next mAP calculation at %d iterations) ", next_map_calc);
            if (mean_average_precision > 0)
                printf("\n Last accuracy mAP@%0.2f = %2.2f %%, best = %2.2f %% ", 0.5, mean_average_precision * 100,
                       best_map * 100);
        }
        if (mean_average_precision > 0.0) {
            printf("\033]2;%d/%d: loss=%0.1f map=%0.2f best=%0.2f hours left=%0.1f\007", iteration, net.max_batches,
                   loss, mean_average_precision, best_map, avg_time);
        } else {
            printf("\033]2;%d/%d: loss=%0.1f hours left=%0.1f\007", iteration, net.max_batches, loss, avg_time);
        }
        printf("\n %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left\n", iteration, loss, avg_loss,
               current_rate(&net, iteration), what_time_is_it_now() - time, iteration * imgs, avg_time);
        fflush(stdout);

        if (calc_map && (iteration >= next_map_calc || iteration == net.max_batches)) {
            iter_map = iteration;
            mean_average_precision = validate_detector_map(datacfg, &net, iteration);
            printf("\n mean_average_precision (mAP@%0.2f) = %f \n", 0.5, mean_average_precision);
            if (mean_average_precision >= best_map) {
                best_map = mean_average_precision;
                printf("New best mAP!\n");
                save_named(backup_directory, base, "best", seen);
            }
        }
        double time_remaining = (double)(net.max_batches - iteration) / ngpus * (what_time_is_it_now() - time) / 3600;
        avg_time = avg_time < 0 ? time_remaining : alpha_time * time_remaining + (1 - alpha_time) * avg_time;

        if (iteration >= iter_save + save_every || iteration % save_every == 0) {
            iter_save = iteration;
            char suffix[32];
            snprintf(suffix, sizeof suffix, "%d", iteration);
            save_named(backup_directory, base, suffix, seen);
        }
        if (iteration >= iter_save_last + 100 || (iteration % 100 == 0 && iteration > 1)) {
            iter_save_last = iteration;
            save_named(backup_directory, base, "last", seen);
        }
        fflush(stdout);
    }
    save_named(backup_directory, base, "final", seen);
    printf("If you want to train from the beginning, then use flag in the end of training command: -clear \n");
    fflush(stdout);
    free(base);
}

static void validate_map(const char *datacfg, const char *cfgfile, const char *weightfile)
{
    network net = parse_network_cfg(cfgfile);
    print_network(&net, 0);
    long long seen = weightfile ? load_weights(weightfile, net.layers) : 0;
    validate_detector_map(datacfg, &net, (int)(seen / net.batch));
}

void run_detector(int argc, char **argv)
{
    int dont_show = find_arg(argc, argv, "-dont_show");
    int calc_map = find_arg(argc, argv, "-map");
    int clear = find_arg(argc, argv, "-clear");
    int mjpeg_port = find_int_arg(argc, argv, "-mjpeg_port", -1);
    char *gpu_list = find_char_arg(argc, argv, "-gpus", 0);
    (void)dont_show; /* no window to show: the stand-in never opens one */
    (void)mjpeg_port;
    int ngpus = 1;
    if (gpu_list) {
        for (const char *c = gpu_list; *c; ++c) ngpus += *c == ',';
    }
    if (argc < 4 || !argv[3] || !argv[4]) {
        fprintf(stderr, "usage: %s %s [train/test/valid/demo/map] [data] [cfg] [weights (optional)]\n", argv[0],
                argv[1]);
        exit(EXIT_FAILURE);
    }
    char *datacfg = argv[3];
    char *cfg = argv[4];
    char *weights = (argc > 5) ? argv[5] : 0;
    if (weights && strlen(weights) > 0 && weights[strlen(weights) - 1] == 0x0d) weights[strlen(weights) - 1] = 0;
    if (0 == strcmp(argv[2], "train")) {
        train_detector(datacfg, cfg, weights, ngpus, clear, calc_map);
    } else if (0 == strcmp(argv[2], "map")) {
        validate_map(datacfg, cfg, weights);
    } else {
        printf(" There isn't such command: %s", argv[2]);
    }
}
