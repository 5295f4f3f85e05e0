# Frequentist references for the Bayesian model tests (tests/test_bayes_models.py).
# Packages: nlme, lme4, MASS (Debian r-cran-*). Run from the repository root:
#   Rscript tests/reference/bayes_reference.R > tests/reference/bayes_reference.out
# Writes tests/reference/bayes_reference.csv (case, statistic, value; 15 significant digits).
suppressPackageStartupMessages({library(nlme); library(lme4); library(MASS)})
options(digits = 15)
here <- "tests/reference"
out <- data.frame(case = character(), statistic = character(), value = character())
put <- function(case, statistic, value) {
  out[nrow(out) + 1, ] <<- list(case, statistic, sprintf("%.15g", value))
}
cat(R.version.string, "\n")
for (p in c("nlme", "lme4", "MASS")) cat(p, as.character(packageVersion(p)), "\n")

## MMRM: unstructured covariance (corSymm + varIdent), REML and ML, rows with missing y dropped
long <- read.csv(file.path(here, "bayes_long_data.csv"))
long <- long[!is.na(long$y), ]
long$fvisit <- factor(long$visit)
for (method in c("REML", "ML")) {
  fit <- gls(y ~ 0 + fvisit + fvisit:treated + fvisit:baseline + severity_stratum, data = long,
             correlation = corSymm(form = ~ visit | participant),
             weights = varIdent(form = ~ 1 | fvisit), method = method)
  cat("\n== gls", method, "\n"); print(summary(fit)$tTable)
  for (v in 1:3) {
    term <- sprintf("fvisit%d:treated", v)
    put(paste0("mmrm_", tolower(method)), sprintf("effect_visit%d", v), coef(fit)[term])
    put(paste0("mmrm_", tolower(method)), sprintf("se_visit%d", v),
        sqrt(vcov(fit)[term, term]))
  }
  complete <- names(which(table(long$participant) == 3))[1]  # one with all three visits
  S <- getVarCov(fit, individual = complete)
  print(S)
  for (v in 1:3) put(paste0("mmrm_", tolower(method)), sprintf("sd_visit%d", v), sqrt(S[v, v]))
  put(paste0("mmrm_", tolower(method)), "n_obs", nrow(long))
}

## Logistic, Poisson and negative binomial (NB2) regressions
glmd <- read.csv(file.path(here, "bayes_glm_data.csv"))
glmd$site <- factor(glmd$site)
lg <- glm(response ~ treated + baseline + site, family = binomial, data = glmd)
cat("\n== logistic\n"); print(summary(lg)$coefficients)
put("logistic", "log_or", coef(lg)["treated"])
put("logistic", "se_log_or", sqrt(vcov(lg)["treated", "treated"]))
# Marginal risks by standardisation over all participants (g-computation at the MLE)
p1 <- mean(predict(lg, transform(glmd, treated = 1), type = "response"))
p0 <- mean(predict(lg, transform(glmd, treated = 0), type = "response"))
put("logistic", "risk_experimental", p1)
put("logistic", "risk_comparator", p0)
put("logistic", "risk_difference", p1 - p0)
put("logistic", "risk_ratio", p1 / p0)
ps <- glm(count ~ treated + baseline + offset(log(exposure)), family = poisson, data = glmd)
cat("\n== poisson\n"); print(summary(ps)$coefficients)
put("poisson", "log_rr", coef(ps)["treated"])
put("poisson", "se_log_rr", sqrt(vcov(ps)["treated", "treated"]))
nb <- glm.nb(count ~ treated + baseline + offset(log(exposure)), data = glmd)
cat("\n== negative binomial\n"); print(summary(nb)$coefficients); cat("theta", nb$theta, "\n")
put("negative_binomial", "log_rr", coef(nb)["treated"])
put("negative_binomial", "se_log_rr", sqrt(vcov(nb)["treated", "treated"]))
put("negative_binomial", "dispersion", 1 / nb$theta)

## Cluster random intercepts (REML)
cl <- read.csv(file.path(here, "bayes_cluster_data.csv"))
mm <- lmer(y ~ treated + baseline + (1 | cluster), data = cl, REML = TRUE)
cat("\n== lmer\n"); print(summary(mm))
vc <- as.data.frame(VarCorr(mm))
s2u <- vc$vcov[vc$grp == "cluster"]; s2e <- vc$vcov[vc$grp == "Residual"]
put("cluster", "effect", fixef(mm)["treated"])
put("cluster", "se_effect", sqrt(vcov(mm)["treated", "treated"]))
put("cluster", "cluster_sd", sqrt(s2u))
put("cluster", "residual_sd", sqrt(s2e))
put("cluster", "icc", s2u / (s2u + s2e))

write.csv(out, file.path(here, "bayes_reference.csv"), row.names = FALSE, quote = FALSE)
cat("\n"); print(out)
