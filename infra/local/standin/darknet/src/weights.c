/* Weights files in darknet's layout: major, minor, revision, images seen (64-bit from version 0.2), then floats.
 * The stand-in's floats are a fixed pattern; only the header means anything (it is how training resumes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"

#define WEIGHT_FLOATS 1024

long long load_weights(const char *filename, int layers)
{
    fprintf(stderr, "Loading weights from %s...", filename);
    fflush(stdout);
    FILE *fp = fopen(filename, "rb");
    if (!fp) file_error(filename);
    int32_t version[3] = {0, 0, 0};
    uint64_t seen = 0;
    if (fread(version, sizeof(int32_t), 3, fp) == 3) {
        if (version[0] * 10 + version[1] >= 2) {
            if (fread(&seen, sizeof(uint64_t), 1, fp) != 1) seen = 0;
        } else {
            uint32_t seen32 = 0;
            if (fread(&seen32, sizeof(uint32_t), 1, fp) == 1) seen = seen32;
        }
    }
    fclose(fp);
    /* A cutoff file (yolov4.conv.137) holds only its first N layers. */
    const char *conv = strstr(filename, ".conv.");
    if (conv) {
        int cutoff = atoi(conv + strlen(".conv."));
        if (cutoff > 0 && cutoff < layers) layers = cutoff;
    }
    printf("\n seen 64, trained: %u K-images (%u Kilo-batches_64) \n", (unsigned)(seen / 1000), (unsigned)(seen / 64000));
    fprintf(stderr, "Done! Loaded %d layers from weights-file \n", layers);
    return (long long)seen;
}

void save_weights(const char *filename, long long seen)
{
    fprintf(stderr, "Saving weights to %s\n", filename);
    FILE *fp = fopen(filename, "wb");
    if (!fp) file_error(filename);
    int32_t version[3] = {0, 2, 5};
    uint64_t seen64 = (uint64_t)seen;
    float weights[WEIGHT_FLOATS];
    for (int i = 0; i < WEIGHT_FLOATS; ++i) weights[i] = (float)((i * 2654435761u) % 2000) / 1000.0f - 1.0f;
    fwrite(version, sizeof(int32_t), 3, fp);
    fwrite(&seen64, sizeof(uint64_t), 1, fp);
    fwrite(weights, sizeof(float), WEIGHT_FLOATS, fp);
    fclose(fp);
}
