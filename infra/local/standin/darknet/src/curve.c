/* What the stand-in reports instead of training: a loss that falls and an AP that rises with the fraction of
 * max_batches done, plus a little noise that depends only on the iteration (a resumed run prints the same). */
#include <math.h>
#include <stdint.h>

#include "darknet.h"

/* A number in [-1, 1] from an integer, the same on every machine. */
static float noise(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return (float)(x % 20001u) / 10000.0f - 1.0f;
}

static float progress(int iteration, int max_batches)
{
    if (max_batches <= 0) return 1.0f;
    float f = (float)iteration / (float)max_batches;
    return f > 1.0f ? 1.0f : f;
}

float standin_loss(int iteration, int max_batches)
{
    float f = progress(iteration, max_batches);
    float loss = 0.5f + 3.5f * expf(-4.0f * f) + 40.0f * expf(-60.0f * f);
    return loss * (1.0f + 0.08f * noise((uint32_t)iteration));
}

float standin_class_ap(int iteration, int max_batches, int class_id)
{
    float f = progress(iteration, max_batches);
    float ap = 0.93f * (1.0f - expf(-5.0f * f));
    ap += 0.02f * noise((uint32_t)(iteration * 31 + class_id * 7919 + 1));
    return ap < 0.0f ? 0.0f : (ap > 1.0f ? 1.0f : ap);
}
