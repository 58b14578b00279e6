/*
 * The whole machine's non-RAM state as one image: every vCPU's and the
 * VM's accelerator state and every device's state, captured at one
 * instant (machine paused) into plain structs, and applied back to a
 * machine in the order KVM requires.
 *
 * Saving:  machine_pause -> machine_state_capture(img) -> machine_resume
 *          is allowed at once (a live snapshot writes the image later);
 *          savevm then writes the sections registered by
 *          machine_state_register() from the image.
 * Loading: machine_state_register() on an empty image, the loader fills
 *          it section by section (validating everything), and only once
 *          the whole stream is good machine_state_apply() puts it into the
 *          (paused, never run) machine.  A bad stream never touches KVM.
 */
#ifndef AMBER_SYSTEM_MACHINE_STATE_H
#define AMBER_SYSTEM_MACHINE_STATE_H

#include <stdbool.h>
#include "util/error.h"
#include "system/machine.h"

typedef struct MachineStateImage MachineStateImage;
typedef struct SaveStateRegistry SaveStateRegistry;

MachineStateImage *machine_state_image_new(Machine *m);
void machine_state_image_free(MachineStateImage *img);

/* Machine paused: read every vCPU (on its own thread), the VM and the devices. */
bool machine_state_capture(Machine *m, MachineStateImage *img, Error **errp);

/*
 * Register one FULL section per vCPU ("cpu", instance = vCPU index), the
 * VM-level accelerator state and each device that has state, all reading
 * from / loading into img.  Section order = the order they are written.
 *
 * Saving: register after machine_state_capture().  Loading: register on
 * an image never captured; "cpu" is then also accepted for indexes the
 * machine lacks (up to AMBER_MAX_CPUS), so that machine_state_complete()
 * can refuse the stream with "the stream has 4 vCPUs, this machine has 2"
 * rather than the loader stopping at an unknown section.
 */
bool machine_state_register(Machine *m, MachineStateImage *img,
                            SaveStateRegistry *r, Error **errp);

/*
 * True once every section that must be present has been loaded into img
 * (a stream that lacks a vCPU is refused, naming it).
 */
bool machine_state_complete(MachineStateImage *img, Error **errp);

/* Machine paused and not yet run from this image: put img into KVM and the devices. */
bool machine_state_apply(Machine *m, MachineStateImage *img, Error **errp);

#endif
