# rpact's getSimulationMeans on the design of benchmarks/bench_simulation.py: the R side of the
# operating-characteristics benchmark (issue 5).
#
# Design: 3 looks at 1/3, 2/3, 1 of the information, one-sided alpha = 0.025, beta = 0.2,
# Lan-DeMets O'Brien-Fleming-type alpha spending (asOF) with non-binding O'Brien-Fleming-type
# beta-spending futility (bsOF), futility obeyed in the simulation. Two arms, 1:1, 22 / 44 / 66
# participants per arm at the looks (plannedSubjects counts both arms), SD 5, lower is better
# (directionUpper = FALSE, as PHQ-9), two scenarios: effect 0 (type-I error) and -2.5 (power).
# 10,000 simulated trials per scenario, normal test statistics (normalApproximation = TRUE).
#
# Usage (from the repository root): Rscript benchmarks/reference/rpact_simulation.R [OUT_DIR]
#   [REPEATS] [SEED]. Writes OUT_DIR/rpact_simulation.csv (long table: scenario, statistic,
#   look, value; timing rows have scenario "all") and OUT_DIR/rpact_simulation.out (rpact's
#   printout). Default OUT_DIR is benchmarks/reference, where the committed output lives.
#   Elapsed times are of getSimulationMeans alone (both scenarios in one call), each repeat with
#   the same seed; R start-up and loading rpact are not included.

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "benchmarks/reference"
repeats <- if (length(args) >= 2) as.integer(args[[2]]) else 5L
seed <- if (length(args) >= 3) as.numeric(args[[3]]) else 20240501

suppressPackageStartupMessages(library(rpact))
setLogLevel("DISABLED")

design <- getDesignGroupSequential(
  kMax = 3, alpha = 0.025, beta = 0.2, informationRates = c(1, 2, 3) / 3,
  typeOfDesign = "asOF", typeBetaSpending = "bsOF", bindingFutility = FALSE)
alternatives <- c(0, -2.5)
scenario_names <- c("null", "benefit")

simulate <- function() {
  getSimulationMeans(
    design, groups = 2, normalApproximation = TRUE, alternative = alternatives, stDev = 5,
    plannedSubjects = c(44, 88, 132), directionUpper = FALSE, allocationRatioPlanned = 1,
    maxNumberOfIterations = 10000, seed = seed)
}

invisible(simulate())  # warm-up: first-call overheads are not the simulation's
elapsed <- numeric(repeats)
for (i in seq_len(repeats)) {
  t0 <- proc.time()[["elapsed"]]
  sim <- simulate()
  elapsed[i] <- proc.time()[["elapsed"]] - t0
}

fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.15g", x))
rows <- list()
add <- function(scenario, statistic, look, value) {
  rows[[length(rows) + 1]] <<- data.frame(scenario = scenario, statistic = statistic,
                                          look = look, value = fmt(value))
}
for (j in seq_along(alternatives)) {
  name <- scenario_names[j]
  add(name, "alternative", NA, alternatives[j])
  add(name, "iterations", NA, sim$iterations[1, j])
  add(name, "overallReject", NA, sim$overallReject[j])
  add(name, "earlyStop", NA, sim$earlyStop[j])
  add(name, "futilityStop", NA, sim$futilityStop[j])
  add(name, "expectedNumberOfSubjects", NA, sim$expectedNumberOfSubjects[j])
  for (k in 1:3) add(name, "rejectPerStage", k, sim$rejectPerStage[k, j])
  for (k in 1:2) add(name, "futilityPerStage", k, sim$futilityPerStage[k, j])
}
for (k in 1:3) add("all", "criticalValues", k, design$criticalValues[k])
for (k in 1:2) add("all", "futilityBounds", k, design$futilityBounds[k])
for (i in seq_len(repeats)) add("all", "elapsed_seconds", i, elapsed[i])
add("all", "seed", NA, seed)
table <- do.call(rbind, rows)
write.csv(table, file.path(out_dir, "rpact_simulation.csv"), row.names = FALSE, quote = FALSE)

sink(file.path(out_dir, "rpact_simulation.out"))
cat("rpact", as.character(packageVersion("rpact")), "on", R.version.string, "\n\n")
print(design)
print(sim)
cat("\nelapsed seconds per repeat:", sprintf("%.3f", elapsed), "\n")
sink()
