# Fixed-bandwidth local-linear RD as weighted least squares, and fuzzy RD as kernel-weighted 2SLS.
# R 4.2 with sandwich (vcovHC) and AER (ivreg), Debian r-cran-* packages.
# Run from the repository root: Rscript tests/reference/rd_lm.R > tests/reference/rd_lm.out
# Writes tests/reference/rd_lm.csv (15 significant digits).
suppressPackageStartupMessages({library(sandwich); library(AER)})
options(digits = 15)
cat(R.version.string, "\n")
cat("sandwich", format(packageVersion("sandwich")), " AER", format(packageVersion("AER")), "\n")
tri <- function(x, h) pmax(0, 1 - abs(x) / h)
uni <- function(x, h) as.numeric(abs(x) <= h)
epa <- function(x, h) pmax(0, 0.75 * (1 - (x / h)^2))
rows <- list()
add <- function(case, est, se, n) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, estimate = sprintf("%.15g", est),
                                          se_hc0 = sprintf("%.15g", se), n = n)
}

senate <- read.csv("tests/reference/rd_senate.csv")
senate <- senate[!is.na(senate$vote) & !is.na(senate$margin), ]
for (k in list(list("tri", tri, 15), list("uni", uni, 15), list("epa", epa, 15),
               list("tri", tri, 25))) {
  d <- senate
  d$w <- k[[2]](d$margin, k[[3]])
  d <- d[d$w > 0, ]
  d$D <- as.numeric(d$margin >= 0)
  # Separate intercepts and slopes on each side of the cut-off, kernel weights.
  fit <- lm(vote ~ D * margin, data = d, weights = w)
  se <- sqrt(diag(vcovHC(fit, type = "HC0")))["D"]
  case <- sprintf("senate_%s_h%g", k[[1]], k[[3]])
  cat("==========", case, "\n")
  print(summary(fit)$coefficients)
  cat("HC0 SE of D:", se, "\n")
  add(case, coef(fit)["D"], se, nrow(d))
}

# Sharp RD with the cut-off at 10 and the treatment BELOW it (treated_above = FALSE).
d <- senate
d$x <- d$margin - 10
d$w <- tri(d$x, 15)
d <- d[d$w > 0, ]
d$B <- as.numeric(d$x < 0)
fit <- lm(vote ~ B * x, data = d, weights = w)
se <- sqrt(diag(vcovHC(fit, type = "HC0")))["B"]
cat("========== senate_below_c10_tri_h15\n")
print(summary(fit)$coefficients)
add("senate_below_c10_tri_h15", coef(fit)["B"], se, nrow(d))

fz <- read.csv("tests/reference/rd_fuzzy_data.csv")
for (h in c(0.5, 0.3)) {
  d <- fz
  d$w <- tri(d$score, h)
  d <- d[d$w > 0, ]
  d$D <- as.numeric(d$score >= 0)
  # Just-identified 2SLS: treated instrumented by D, side-specific slopes exogenous.
  iv <- ivreg(y ~ treated + score + D:score | D + score + D:score, data = d, weights = w)
  se <- sqrt(diag(vcovHC(iv, type = "HC0")))["treated"]
  case <- sprintf("fuzzy_tri_h%g", h)
  cat("==========", case, "\n")
  print(summary(iv)$coefficients)
  cat("HC0 SE of treated:", se, "\n")
  add(case, coef(iv)["treated"], se, nrow(d))
}
out <- do.call(rbind, rows)
write.csv(out, "tests/reference/rd_lm.csv", row.names = FALSE, quote = FALSE)
print(out)
