# Shared helpers for the MMRM references (sourced by mmrm_sim.R, mmrm_btheb.R, mmrm_bench.R).
#
# Each fit is nlme::gls with a visit-specific mean model
#   y ~ 0 + visit + visit:arm + visit:baseline [+ other covariates]
# (visit and arm factors; arm levels comparator first) and one of the covariance structures
# below, grouped by participant, with the visit position 1..T as the correlation covariate.
# LS means and treatment contrasts by visit come from emmeans with mode = "satterthwaite".

suppressPackageStartupMessages({
  library(nlme)
  library(emmeans)
})

f15 <- function(x) sprintf("%.15g", x)

structures <- list(
  unstructured = list(cor = function() corSymm(form = ~ visit_index | participant),
                      het = TRUE),
  compound_symmetry = list(cor = function() corCompSymm(form = ~ visit_index | participant),
                           het = FALSE),
  heterogeneous_compound_symmetry = list(
    cor = function() corCompSymm(form = ~ visit_index | participant), het = TRUE),
  ar1 = list(cor = function() corAR1(form = ~ visit_index | participant), het = FALSE),
  heterogeneous_ar1 = list(cor = function() corAR1(form = ~ visit_index | participant),
                           het = TRUE),
  # corARMA(p = T - 1) spans every stationary (Toeplitz) correlation on T equally spaced
  # positions: the partial autocorrelations at lags 1..T-1 are free.
  toeplitz = list(cor = function(t) corARMA(form = ~ visit_index | participant, p = t - 1),
                  het = FALSE),
  heterogeneous_toeplitz = list(
    cor = function(t) corARMA(form = ~ visit_index | participant, p = t - 1), het = TRUE)
)

fit_one <- function(d, rhs, structure, method, tight = TRUE) {
  s <- structures[[structure]]
  t <- nlevels(d$visit)
  cor <- if (length(formals(s$cor)) == 1) s$cor(t) else s$cor()
  form <- as.formula(paste("y ~", rhs))
  # natural = FALSE keeps apVar on the scale of coef(modelStruct), so that emmeans uses its
  # analytical Satterthwaite (gls_grad) rather than the randomised appx-satterthwaite kludge
  ctrl <- if (tight) {
    glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-10,
               natural = FALSE)
  } else {
    glsControl()  # nlme's defaults: what a user timing gls would run
  }
  args <- list(model = form, data = d, correlation = cor, method = method, control = ctrl)
  if (s$het) args$weights <- varIdent(form = ~ 1 | visit)
  fit <- do.call(gls, args)
  # re-attach the data so that emmeans finds the exact model frame
  fit$call$data <- d
  fit
}

complete_subject <- function(d) {
  tab <- table(d$participant)
  names(tab)[tab == nlevels(d$visit)][1]
}

summarise_fit <- function(fit, d, label, structure, method) {
  co <- summary(fit)$tTable
  coefs <- data.frame(fit = label, term = rownames(co), estimate = f15(co[, "Value"]),
                      std_error = f15(co[, "Std.Error"]), stringsAsFactors = FALSE)
  v <- getVarCov(fit, individual = complete_subject(d))
  lv <- levels(d$visit)
  cov <- expand.grid(row = seq_along(lv), col = seq_along(lv))
  cov <- data.frame(fit = label, visit_row = lv[cov$row], visit_col = lv[cov$col],
                    value = f15(v[cbind(cov$row, cov$col)]), stringsAsFactors = FALSE)
  emm <- emmeans(fit, ~ arm | visit, mode = "satterthwaite", data = d)
  es <- as.data.frame(summary(emm, infer = c(TRUE, FALSE), level = 0.95))
  lsm <- data.frame(fit = label, visit = es$visit, arm = es$arm, estimate = f15(es$emmean),
                    se = f15(es$SE), df = f15(es$df), ci_lower = f15(es$lower.CL),
                    ci_upper = f15(es$upper.CL), stringsAsFactors = FALSE)
  con <- contrast(emm, method = "revpairwise")
  cs <- as.data.frame(summary(con, infer = c(TRUE, TRUE), level = 0.95))
  ctr <- data.frame(fit = label, visit = cs$visit, contrast = cs$contrast,
                    estimate = f15(cs$estimate), se = f15(cs$SE), df = f15(cs$df),
                    t = f15(cs$t.ratio), p = f15(cs$p.value), ci_lower = f15(cs$lower.CL),
                    ci_upper = f15(cs$upper.CL), stringsAsFactors = FALSE)
  ll <- logLik(fit)
  info <- data.frame(fit = label, structure = structure, method = method,
                     n_obs = nobs(fit), n_participants = length(unique(d$participant)),
                     log_likelihood = f15(as.numeric(ll)), df_loglik = attr(ll, "df"),
                     aic = f15(AIC(fit)), bic = f15(BIC(fit)), sigma = f15(fit$sigma),
                     stringsAsFactors = FALSE)
  list(coefs = coefs, cov = cov, lsm = lsm, ctr = ctr, info = info, emm = emm, con = con)
}

run_fits <- function(d, rhs, plan, stem, header) {
  out <- list()
  sink(paste0(stem, ".out"))
  cat(header)
  cat("#", R.version.string, "| nlme", as.character(packageVersion("nlme")),
      "| emmeans", as.character(packageVersion("emmeans")), "\n")
  cat("# mean model: y ~", rhs, "\n")
  cat("# rows used:", nrow(d), " participants:", length(unique(d$participant)), "\n\n")
  for (label in names(plan)) {
    p <- plan[[label]]
    fit <- fit_one(d, rhs, p$structure, p$method)
    s <- summarise_fit(fit, d, label, p$structure, p$method)
    cat("==================== fit", label, ":", p$structure, p$method, "\n")
    print(summary(fit))
    cat("\nlogLik", format(as.numeric(logLik(fit)), digits = 15), " AIC",
        format(AIC(fit), digits = 15), " BIC", format(BIC(fit), digits = 15), "\n")
    cat("\ngetVarCov (complete participant)\n")
    print(getVarCov(fit, individual = complete_subject(d)))
    cat("\nemmeans(~ arm | visit, mode = \"satterthwaite\")\n")
    print(summary(s$emm, infer = c(TRUE, FALSE)))
    print(summary(s$con, infer = c(TRUE, TRUE)))
    cat("\n")
    out[[label]] <- s
  }
  sink()
  for (part in c("coefs", "cov", "lsm", "ctr", "info")) {
    tab <- do.call(rbind, lapply(out, function(s) s[[part]]))
    write.csv(tab, paste0(stem, "_", part, ".csv"), row.names = FALSE, quote = FALSE)
  }
  invisible(out)
}

prepare <- function(d, covariates) {
  keep <- !is.na(d$y)
  for (c in covariates) keep <- keep & !is.na(d[[c]])
  d <- d[keep, ]
  d$visit <- factor(d$visit, levels = sort(unique(d$visit)))
  d$visit_index <- as.integer(d$visit)
  d$arm <- factor(d$arm, levels = c(d$arm[d$treated == 0][1], d$arm[d$treated == 1][1]))
  d$participant <- factor(d$participant)
  d <- d[order(d$participant, d$visit_index), ]
  d
}
