/* darknet's entry point: `./darknet detector train|map …`; other commands are not part of the stand-in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"

int main(int argc, char **argv)
{
    /* A pipe would otherwise hold lines back until exit; the agent reads the log as it is written. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf(" GPU isn't used \n");
    printf(" OpenCV isn't used - data augmentation will be slow \n");
    printf(" darknet stand-in built with %s \n", STANDIN_BUILD);
    if (argc < 2) {
        fprintf(stderr, "usage: %s <function>\n", argv[0]);
        return 0;
    }
    if (0 == strcmp(argv[1], "detector")) {
        run_detector(argc, argv);
    } else {
        fprintf(stderr, "Not an option: %s (the stand-in has only `detector train` and `detector map`)\n", argv[1]);
    }
    return 0;
}
