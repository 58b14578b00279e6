/* The amber executable: everything happens in system/vl.c. */
#include "system/cli.h"

int main(int argc, char **argv)
{
    return amber_main(argc, argv);
}
