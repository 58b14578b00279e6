int main(void) { return 0; }  /* replaced by the CLI (system/vl.c) */
