# Group-sequential boundaries and design characteristics from rpact, the reference for
# tests/test_boundaries.py.
#
# rpact 3.3.4 (Debian r-cran-rpact), R 4.2.2. One-sided tests, alpha = 0.025, beta = 0.2.
# For every design: getDesignGroupSequential() critical values, stage levels, cumulative alpha
# spent, futility bounds, cumulative beta spent and power; getDesignCharacteristics() shift,
# inflation factor, cumulative power, rejection and futility probabilities under H1 and the
# expected sample size relative to the fixed design under H0, H1 and halfway (ASN ratios).
# Plus repeated confidence intervals for one observed one-sample path.
#
# Outputs (all numbers with 15 significant digits):
#   rpact_boundaries.out   raw print() of every design, its characteristics and the RCIs
#   rpact_boundaries.csv   long table: design, statistic, look, value
#   rpact_boundaries.json  the same values with each design's specification
#
# Run from the repository root: Rscript tests/reference/rpact_boundaries.R

suppressPackageStartupMessages(library(rpact))
setLogLevel("DISABLED")  # no timing lines in the .out, so reruns give the same files

out_dir <- "tests/reference"
fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.15g", x))

designs <- list(
  list(id = "d01_OF_K2", kMax = 2, informationRates = c(0.5, 1), typeOfDesign = "OF"),
  list(id = "d02_P_K3", kMax = 3, informationRates = c(1, 2, 3) / 3, typeOfDesign = "P"),
  list(id = "d03_OF_K4_unequal", kMax = 4, informationRates = c(0.15, 0.4, 0.7, 1),
       typeOfDesign = "OF"),
  list(id = "d04_P_K3_unequal", kMax = 3, informationRates = c(0.3, 0.65, 1), typeOfDesign = "P"),
  list(id = "d05_asOF_K3", kMax = 3, informationRates = c(1, 2, 3) / 3, typeOfDesign = "asOF"),
  list(id = "d06_asOF_K4_unequal", kMax = 4, informationRates = c(0.2, 0.45, 0.7, 1),
       typeOfDesign = "asOF"),
  list(id = "d07_asP_K2_unequal", kMax = 2, informationRates = c(0.4, 1), typeOfDesign = "asP"),
  list(id = "d08_asP_K4", kMax = 4, informationRates = c(1, 2, 3, 4) / 4, typeOfDesign = "asP"),
  list(id = "d09_asHSDm4_K3", kMax = 3, informationRates = c(1, 2, 3) / 3,
       typeOfDesign = "asHSD", gammaA = -4),
  list(id = "d10_asHSD1_K4_unequal", kMax = 4, informationRates = c(0.25, 0.5, 0.8, 1),
       typeOfDesign = "asHSD", gammaA = 1),
  list(id = "d11_asKD3_K3_unequal", kMax = 3, informationRates = c(0.3, 0.7, 1),
       typeOfDesign = "asKD", gammaA = 3),
  list(id = "d12_asOF_bsOF_nonbinding_K3", kMax = 3, informationRates = c(1, 2, 3) / 3,
       typeOfDesign = "asOF", typeBetaSpending = "bsOF", bindingFutility = FALSE),
  list(id = "d13_asOF_bsOF_binding_K3", kMax = 3, informationRates = c(1, 2, 3) / 3,
       typeOfDesign = "asOF", typeBetaSpending = "bsOF", bindingFutility = TRUE),
  list(id = "d14_asHSDm4_bsHSDm2_nonbinding_K4", kMax = 4,
       informationRates = c(0.2, 0.45, 0.7, 1), typeOfDesign = "asHSD", gammaA = -4,
       typeBetaSpending = "bsHSD", gammaB = -2, bindingFutility = FALSE),
  list(id = "d15_asHSDm4_bsHSDm2_binding_K4", kMax = 4,
       informationRates = c(0.2, 0.45, 0.7, 1), typeOfDesign = "asHSD", gammaA = -4,
       typeBetaSpending = "bsHSD", gammaB = -2, bindingFutility = TRUE),
  list(id = "d16_asP_bsHSD1_binding_K2", kMax = 2, informationRates = c(0.4, 1),
       typeOfDesign = "asP", typeBetaSpending = "bsHSD", gammaB = 1, bindingFutility = TRUE),
  list(id = "d17_asHSD1_bsOF_nonbinding_K3", kMax = 3, informationRates = c(0.3, 0.6, 1),
       typeOfDesign = "asHSD", gammaA = 1, typeBetaSpending = "bsOF", bindingFutility = FALSE),
  list(id = "d18_asOF_bsOF_binding_K2", kMax = 2, informationRates = c(0.5, 1),
       typeOfDesign = "asOF", typeBetaSpending = "bsOF", bindingFutility = TRUE),
  # The planned 3-look asOF design d05 recomputed at the information fractions observed at its
  # two interims (0.28 and 0.61); the final analysis stays at full information.
  list(id = "d19_asOF_K3_observed", kMax = 3, informationRates = c(0.28, 0.61, 1),
       typeOfDesign = "asOF")
)

rows <- list()
add <- function(id, statistic, values) {
  rows[[length(rows) + 1]] <<- data.frame(
    design = id, statistic = statistic, look = seq_along(values), value = fmt(values),
    stringsAsFactors = FALSE)
}

sink(file.path(out_dir, "rpact_boundaries.out"))
cat("rpact", as.character(packageVersion("rpact")), "-", R.version.string, "\n\n")
options(digits = 15)

json_designs <- character(0)
jnum <- function(x) paste0("[", paste(fmt(x), collapse = ", "), "]")

for (spec in designs) {
  args <- list(kMax = spec$kMax, alpha = 0.025, beta = 0.2, sided = 1,
               informationRates = spec$informationRates, typeOfDesign = spec$typeOfDesign)
  if (!is.null(spec$gammaA)) args$gammaA <- spec$gammaA
  beta_spending <- !is.null(spec$typeBetaSpending)
  if (beta_spending) {
    args$typeBetaSpending <- spec$typeBetaSpending
    args$bindingFutility <- spec$bindingFutility
    if (!is.null(spec$gammaB)) args$gammaB <- spec$gammaB
  }
  design <- do.call(getDesignGroupSequential, args)
  chars <- getDesignCharacteristics(design)

  cat("==========", spec$id, "==========\n")
  print(design)
  print(chars)
  cat("criticalValues:", fmt(design$criticalValues), "\n")
  cat("alphaSpent:", fmt(design$alphaSpent), "\n")
  cat("futilityBounds:", fmt(design$futilityBounds), "\n\n")

  values <- list(
    criticalValues = design$criticalValues,
    stageLevels = design$stageLevels,
    alphaSpent = design$alphaSpent,
    shift = chars$shift,
    inflationFactor = chars$inflationFactor,
    nFixed = chars$nFixed,
    powerH1 = chars$power,
    rejectionProbabilitiesH1 = chars$rejectionProbabilities,
    averageSampleNumber0 = chars$averageSampleNumber0,
    averageSampleNumber01 = chars$averageSampleNumber01,
    averageSampleNumber1 = chars$averageSampleNumber1
  )
  if (beta_spending) {
    values$futilityBounds <- design$futilityBounds
    values$betaSpent <- design$betaSpent
    values$futilityProbabilitiesH1 <- chars$futilityProbabilities
  }
  for (name in names(values)) add(spec$id, name, values[[name]])

  json_values <- paste0(sprintf('        "%s": %s', names(values),
                                vapply(values, jnum, "")), collapse = ",\n")
  json_designs <- c(json_designs, paste0(
    "    {\n",
    sprintf('      "id": "%s",\n', spec$id),
    sprintf('      "kMax": %d,\n', as.integer(spec$kMax)),
    sprintf('      "informationRates": %s,\n', jnum(spec$informationRates)),
    sprintf('      "typeOfDesign": "%s",\n', spec$typeOfDesign),
    sprintf('      "gammaA": %s,\n', if (is.null(spec$gammaA)) "null" else fmt(spec$gammaA)),
    sprintf('      "typeBetaSpending": %s,\n',
            if (beta_spending) sprintf('"%s"', spec$typeBetaSpending) else "null"),
    sprintf('      "gammaB": %s,\n', if (is.null(spec$gammaB)) "null" else fmt(spec$gammaB)),
    sprintf('      "bindingFutility": %s,\n',
            if (beta_spending && spec$bindingFutility) "true" else "false"),
    '      "values": {\n', json_values, "\n      }\n    }"))
}

# Repeated confidence intervals (one-sample means, normal approximation) for the non-binding
# design d12: RCI_k = overall mean_k -/+ c_k * overall sd_k / sqrt(N_k), two-sided level 1 - 2 alpha.
rci_design <- getDesignGroupSequential(kMax = 3, alpha = 0.025, beta = 0.2, sided = 1,
                                       typeOfDesign = "asOF", typeBetaSpending = "bsOF",
                                       bindingFutility = FALSE)
rci_data <- getDataset(n = c(30, 30, 30), means = c(0.4, 0.35, 0.5), stDevs = c(1.1, 0.9, 1.2))
stage <- getStageResults(rci_design, dataInput = rci_data, normalApproximation = TRUE)
rci <- getRepeatedConfidenceIntervals(rci_design, dataInput = rci_data,
                                      normalApproximation = TRUE)
cat("========== rci_d12 ==========\n")
print(rci_data)
print(stage)
print(rci)
rci_values <- list(
  overallSampleSizes = stage$overallSampleSizes,
  overallMeans = stage$overallMeans,
  overallStDevs = stage$overallStDevs,
  overallTestStatistics = stage$overallTestStatistics,
  lower = rci[1, ],
  upper = rci[2, ]
)
for (name in names(rci_values)) add("rci_d12", name, rci_values[[name]])
sink()

csv <- do.call(rbind, rows)
write.csv(csv, file.path(out_dir, "rpact_boundaries.csv"), row.names = FALSE, quote = FALSE)

json <- paste0(
  "{\n",
  sprintf('  "source": "rpact %s (Debian r-cran-rpact), %s",\n',
          as.character(packageVersion("rpact")), R.version.string),
  '  "alpha": 0.025,\n  "beta": 0.2,\n  "sided": 1,\n',
  '  "designs": [\n', paste(json_designs, collapse = ",\n"), "\n  ],\n",
  '  "rci": {\n    "design": "d12_asOF_bsOF_nonbinding_K3",\n',
  '    "n": [30, 30, 30], "means": [0.4, 0.35, 0.5], "stDevs": [1.1, 0.9, 1.2],\n',
  paste0(sprintf('    "%s": %s', names(rci_values), vapply(rci_values, jnum, "")),
         collapse = ",\n"),
  "\n  }\n}\n")
writeLines(json, file.path(out_dir, "rpact_boundaries.json"))
