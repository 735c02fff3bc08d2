/** Exit codes of `launch`, distinct so schedulers (e.g. a Kubernetes podFailurePolicy) can tell them apart. */
export const EXIT_OK = 0;
/** Any unexpected error in launch itself. */
export const EXIT_INTERNAL = 1;
/** Bad configuration or arguments: retrying cannot help. */
export const EXIT_CONFIG = 2;
/** A worker failed (crash, lost peer, missed heartbeats, diverged parameters). */
export const EXIT_WORKER_FAILURE = 3;
/** The coordinator could not be reached or went away. */
export const EXIT_COORDINATOR_LOST = 4;
/** Interrupted by SIGINT/SIGTERM (128 + SIGINT, as shells report it). */
export const EXIT_INTERRUPTED = 130;
