/**
 * `launch bench <allreduce|step|scaling|simulate>`: the benchmarks a user runs to see how ringtrain performs on
 * their machines, each printing a table and writing JSON (and, with --html, a self-contained report).
 * One subcommand per file in this folder, each exporting a factory `(setCode) => CommandModule`; this file only
 * registers them.
 */
import type { Argv } from "yargs";
import { simulateCommand } from "./simulate";
import { allreduceCommand } from "./allreduce";
import { scalingCommand } from "./scaling";
import { stepCommand } from "./step";
import { onceFlag } from "../input-error";

/** Adds the `bench` command and its subcommands to the launch CLI. `setCode` receives the process exit code. */
export function registerBenchCommand(y: Argv, setCode: (code: number) => void): Argv {
  return y.command(
    "bench",
    "benchmarks: allreduce (nccl-tests style), step (tokens/s, MFU), scaling (tokens/s per N, efficiency, time split), simulate (predict large clusters)",
    (b) =>
      b
        // a single-valued flag given twice is refused, as launch's own flags are (yargs would collect both values)
        .middleware((argv) => {
          for (const [key, value] of Object.entries(argv)) {
            if (key !== "_" && key !== "set" && /^[a-z][a-z-]*$/.test(key) && Array.isArray(value)) onceFlag(key, value);
          }
        })
        .command(allreduceCommand(setCode))
        .command(scalingCommand(setCode))
        .command(stepCommand(setCode))
        .command(simulateCommand(setCode))
        // SUBCOMMANDS: one `.command(xxxCommand(setCode))` line per subcommand file; keep this marker line.
        .demandCommand(1, "name a benchmark: allreduce, step, scaling or simulate"),
    () => setCode(0),
  );
}
