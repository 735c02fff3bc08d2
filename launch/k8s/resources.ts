import type { V1ResourceRequirements } from "@kubernetes/client-node";
import type { K8sOptions } from "./options";

/** The extended resource of NVIDIA's device plugin: one per GPU worker. */
export const GPU_RESOURCE = "nvidia.com/gpu";

/**
 * Requests and limits of the training container. Memory: request = limit (`--memory-per-node`), so the scheduler
 * places the pod where that much is free and the kernel kills it only past what was asked for; the in-memory
 * /dev/shm counts against it. CPU: a request only (`--cpu-per-node`, default one core per worker): a CPU limit
 * would let CFS throttle the ring's threads mid-step, stalling every rank. GPU images: one nvidia.com/gpu per
 * worker, as a limit (extended resources take their request from it).
 */
export function containerResources(o: K8sOptions): V1ResourceRequirements {
  return {
    requests: { cpu: o.resources.cpu, memory: o.resources.memory },
    limits: { memory: o.resources.memory, ...(o.gpus ? { [GPU_RESOURCE]: String(o.workersPerNode) } : {}) },
  };
}
