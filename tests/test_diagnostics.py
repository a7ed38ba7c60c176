"""Fit statistics against R's factanal and psych::fa.stats; summary text; choosing L."""

import warnings

import numpy as np
import pytest

from latentmodels.diagnostics import (
    DimensionTable,
    choose_n_components,
    fit_statistics,
    minka_log_evidence,
    rmsea_interval,
    summary,
)

# Reference numbers: produced by this R script (R 4, psych 2.2.9, GPArotation 2022.10.2); the
# literals are its printed output (the rotation keys are used in test_rotations.py).
# factanal's STATISTIC/dof/PVAL come from its own fit (loadings and uniquenesses below);
# psych's fa.stats(R, L0, n.obs, alpha=0.1) evaluates the same loadings with uniquenesses
# 1 − rowSums(L0²), which is what our test passes for those. "RMSEA_ci_tight" is psych's interval
# recomputed with uniroot(tol=1e-14); psych's own ("psych_RMSEA"[1:2]) uses uniroot's default
# tolerance (~1.2e-4 in the noncentrality).
# # Reference numbers for tests/test_rotations.py and tests/test_diagnostics.py
# # R 4, psych 2.2.9, GPArotation 2022.10.2
# suppressMessages({library(psych); library(GPArotation)})
# fmt <- function(x) {  # four numbers a line
#   s <- sprintf("%.17g", x)
#   sep <- ifelse(seq_along(s) %% 4 == 0, ",\n            ", ", ")
#   paste0("[", paste0(s, c(sep[-length(s)], ""), collapse=""), "]")
# }
# mat <- function(name, M) {
#   M <- unclass(as.matrix(M))
#   cat(sprintf("    \"%s\": np.array([\n", name))
#   for (i in seq_len(nrow(M))) cat("        ", fmt(M[i, ]), ",\n", sep="")
#   cat("    ]),\n")
# }
# num <- function(name, x) {
#   v <- if (length(x) == 1) sprintf("%.17g", x) else fmt(x)
#   cat(sprintf("    \"%s\": %s,\n", name, v))
# }
# ctl <- list(nstart=1, opt=list(factr=1, pgtol=0, maxit=100000))
# E <- 1e-14; EG <- 1e-10; MX <- 3000
# chk <- function(o, name) {  # GPArotation stalls at rounding; record where, insist on < 10^-6.5
#   s <- o$Table[nrow(o$Table), 3]
#   cat(sprintf("    # %s: GPA stopped at log10|projected gradient| = %.2f after %d iterations\n",
#               name, s, nrow(o$Table) - 1))
#   if (s > -6.5) stop(name)
# }
# vmx <- function(x, normalize=TRUE) varimax(x, normalize=normalize, eps=E)
# promax_core <- function(x, m=4, normalize_varimax=TRUE) {   # stats::promax with a converged varimax
#   xx <- vmx(x, normalize_varimax); x <- xx$loadings
#   Q <- x * abs(x)^(m - 1)
#   U <- lm.fit(x, Q)$coefficients
#   d <- diag(solve(t(U) %*% U)); U <- U %*% diag(sqrt(d))
#   z <- x %*% U; U <- xx$rotmat %*% U; ui <- solve(U)
#   list(loadings=unclass(z), rotmat=U, Phi=ui %*% t(ui))
# }
# promax_kaiser <- function(x, m=4) {   # psych::kaiser(x, rotate="Promax") with a converged varimax
#   h <- sqrt(rowSums(x^2)); r <- promax_core(x / h, m); r$loadings <- r$loadings * h; r
# }
# # psych::fa.stats's RMSEA interval, with a tight uniroot tolerance
# rmsea_ci <- function(chisq, df, n.obs, tail=0.05, tol=1e-14) {
#   mx <- max(n.obs, chisq) + 2 * n.obs
#   root <- function(p) uniroot(function(x) pchisq(chisq, df, ncp=x) - p, c(0, mx), tol=tol)$root
#   U <- if (pchisq(chisq, df) > tail) sqrt(root(tail) / (n.obs - 1) / df) else 0
#   L <- if (pchisq(chisq, df) > 1 - tail) sqrt(root(1 - tail) / (n.obs - 1) / df) else 0
#   c(L, U)
# }
# # the sign and column order of psych::fa (psych 2.2.9, in fac())
# psych_order <- function(loadings, Phi=NULL) {
#   signed <- sign(colSums(loadings)); signed[signed == 0] <- 1
#   loadings <- loadings %*% diag(signed)
#   if (!is.null(Phi)) Phi <- diag(signed) %*% Phi %*% diag(signed)
#   ev.rotated <- if (is.null(Phi)) diag(t(loadings) %*% loadings) else
#     diag(Phi %*% t(loadings) %*% loadings)
#   ev.order <- order(ev.rotated, decreasing = TRUE)
#   list(loadings=loadings[, ev.order], Phi=if (is.null(Phi)) NULL else Phi[ev.order, ev.order])
# }
# case <- function(key, R, n.obs, k) {
#   R <- unclass(R)
#   f <- factanal(covmat=R, factors=k, n.obs=n.obs, rotation="none", control=ctl)
#   L0 <- unclass(f$loadings); dimnames(L0) <- NULL
#   cat(sprintf("%s = {\n", key))
#   num("n_obs", n.obs); num("k", k)
#   mat("R", R); mat("unrotated", L0); num("uniquenesses", f$uniquenesses)
#   num("objective", f$criteria[["objective"]])
#   num("STATISTIC", f$STATISTIC)
#   num("dof", f$dof)
#   num("PVAL", f$PVAL)
#   s <- fa.stats(R, L0, n.obs=n.obs, alpha=0.1)
#   num("psych_objective", s$objective); num("psych_STATISTIC", s$STATISTIC)
#   num("psych_RMSEA", s$RMSEA[1:3]); num("RMSEA_ci_tight", rmsea_ci(s$STATISTIC, s$dof, n.obs))
#   num("TLI", s$TLI)
#   num("BIC", s$BIC)
#   num("null_chisq", s$null.chisq)
#   num("null_dof", s$null.dof)
#   num("null_model", s$null.model)
#   v <- vmx(L0); mat("varimax", v$loadings); mat("varimax_T", v$rotmat)
#   v <- vmx(L0, FALSE); mat("varimax_raw", v$loadings)
#   q <- quartimax(L0, normalize=TRUE, eps=EG, maxit=MX)
#   chk(q, "quartimax")
#   mat("quartimax", q$loadings)
#   q <- quartimax(L0, eps=EG, maxit=MX); chk(q, "quartimax_raw"); mat("quartimax_raw", q$loadings)
#   o <- oblimin(L0, normalize=TRUE, eps=EG, maxit=MX)
#   chk(o, "oblimin")
#   mat("oblimin", o$loadings)
#   mat("oblimin_Phi", o$Phi)
#   mat("oblimin_T", o$Th)
#   o <- oblimin(L0, eps=EG, maxit=MX)
#   chk(o, "oblimin_raw")
#   mat("oblimin_raw", o$loadings)
#   mat("oblimin_raw_Phi", o$Phi)
#   o <- oblimin(L0, gam=0.5, normalize=TRUE, eps=EG, maxit=MX)
#   chk(o, "biquartimin")
#   mat("biquartimin", o$loadings)
#   mat("biquartimin_Phi", o$Phi)
#   p <- promax_kaiser(L0); mat("promax", p$loadings); mat("promax_Phi", p$Phi)
#   p <- promax_core(L0); mat("promax_stats", p$loadings); mat("promax_stats_Phi", p$Phi)
#   p <- promax_core(L0, normalize_varimax=FALSE)
#   mat("promax_raw", p$loadings)
#   mat("promax_raw_Phi", p$Phi)
#   s1 <- psych_order(unclass(vmx(L0)$loadings)); mat("varimax_sorted", s1$loadings)
#   o <- oblimin(L0, eps=EG, maxit=MX)
#   s1 <- psych_order(unclass(o$loadings), o$Phi)
#   mat("oblimin_raw_sorted", s1$loadings)
#   mat("oblimin_raw_sorted_Phi", s1$Phi)
#   p <- promax_kaiser(L0)
#   s1 <- psych_order(p$loadings, p$Phi)
#   mat("promax_sorted", s1$loadings)
#   mat("promax_sorted_Phi", s1$Phi)
#   cat("}\n\n")
# }
# case("ABILITY_2", cov2cor(ability.cov$cov), 112, 2)
# case("HARMAN23_2", Harman23.cor$cov, 305, 2)
# case("HARMAN23_3", Harman23.cor$cov, 305, 3)
# case("HARMAN74_3", Harman74.cor$cov, 145, 3)

ABILITY_2 = {
    "n_obs": 112,
    "k": 2,
    "R": np.array([
        [1, 0.46626493273403985, 0.55166319018047727, 0.34032498923219517,
            0.57647992570257489, 0.51440579085110538],
        [0.46626493273403979, 1, 0.57243636149390931, 0.19309918420086847,
            0.26292287051090169, 0.23927660846773327],
        [0.55166319018047727, 0.57243636149390942, 1, 0.44509013738289199,
            0.35402518420309442, 0.35647150598289656],
        [0.34032498923219517, 0.1930991842008685, 0.44509013738289194, 1,
            0.18396445048119475, 0.21883698156044565],
        [0.57647992570257489, 0.26292287051090163, 0.35402518420309442, 0.18396445048119472,
            1, 0.79137785884679546],
        [0.51440579085110538, 0.23927660846773327, 0.35647150598289662, 0.21883698156044565,
            0.79137785884679557, 1],
    ]),
    "unrotated": np.array([
        [0.64752635926720081, 0.35423924447976329],
        [0.34743157775915334, 0.53847853452979855],
        [0.471081607631892, 0.74826636828411275],
        [0.25302056922712385, 0.40811658166109305],
        [0.96405849372029873, -0.13468282370950899],
        [0.81540101941752163, -0.039151551017529707],
    ]),
    "uniquenesses": [0.45522417191806563, 0.58933216584117532, 0.21817956114336018, 0.76942144731882689,
            0.05245175767446477, 0.33358833306993113],
    "objective": 0.057160216836975586,
    "STATISTIC": 6.1066164987502258,
    "dof": 4,
    "PVAL": 0.19132631560980201,
    "psych_objective": 0.057160216836975586,
    "psych_STATISTIC": 6.1066164987502258,
    "psych_RMSEA": [0.067984052468112191, 0, 0.17112269097884139],
    "RMSEA_ci_tight": [0, 0.17112269708591246],
    "TLI": 0.96840654810363258,
    "BIC": -12.767378986430151,
    "null_chisq": 268.35376530651456,
    "null_dof": 15,
    "null_model": 2.4809284928183164,
}

HARMAN23_2 = {
    "n_obs": 305,
    "k": 2,
    "R": np.array([
        [1, 0.84599999999999997, 0.80500000000000005, 0.85899999999999999,
            0.47299999999999998, 0.39800000000000002, 0.30099999999999999, 0.38200000000000001],
        [0.84599999999999997, 1, 0.88100000000000001, 0.82599999999999996,
            0.376, 0.32600000000000001, 0.27700000000000002, 0.41499999999999998],
        [0.80500000000000005, 0.88100000000000001, 1, 0.80100000000000005,
            0.38, 0.31900000000000001, 0.23699999999999999, 0.34499999999999997],
        [0.85899999999999999, 0.82599999999999996, 0.80100000000000005, 1,
            0.436, 0.32900000000000001, 0.32700000000000001, 0.36499999999999999],
        [0.47299999999999998, 0.376, 0.38, 0.436,
            1, 0.76200000000000001, 0.72999999999999998, 0.629],
        [0.39800000000000002, 0.32600000000000001, 0.31900000000000001, 0.32900000000000001,
            0.76200000000000001, 1, 0.58299999999999996, 0.57699999999999996],
        [0.30099999999999999, 0.27700000000000002, 0.23699999999999999, 0.32700000000000001,
            0.72999999999999998, 0.58299999999999996, 1, 0.53900000000000003],
        [0.38200000000000001, 0.41499999999999998, 0.34499999999999997, 0.36499999999999999,
            0.629, 0.57699999999999996, 0.53900000000000003, 1],
    ]),
    "unrotated": np.array([
        [0.87968573180713228, -0.23745635396453263],
        [0.87354208616383844, -0.36035611733033973],
        [0.8457866279228955, -0.34420497097394559],
        [0.85512364029690258, -0.26333616871000071],
        [0.70476240977124605, 0.64357727160548184],
        [0.5886723407723301, 0.53829308662635822],
        [0.5264987531463492, 0.5535814982954661],
        [0.57428404463312999, 0.36532702106708553],
    ]),
    "uniquenesses": [0.16976749315390943, 0.10706769241679945, 0.16616791783074014, 0.19941762216400721,
            0.0891182410800231, 0.36370543180031767, 0.41634659229520382, 0.53673399794540766],
    "objective": 0.25316169357703266,
    "STATISTIC": 75.737539995128941,
    "dof": 13,
    "PVAL": 6.9367752692267684e-11,
    "psych_objective": 0.25316169357703089,
    "psych_STATISTIC": 75.737539995128415,
    "psych_RMSEA": [0.12574597267384238, 0.09937189814680919, 0.1541920080946089],
    "RMSEA_ci_tight": [0.099371898271408798, 0.15419199735050795],
    "TLI": 0.93403566688437656,
    "BIC": 1.3734868992320628,
    "null_chisq": 2085.7404778752448,
    "null_dof": 28,
    "null_model": 6.9409000927628774,
}

HARMAN23_3 = {
    "n_obs": 305,
    "k": 3,
    "R": np.array([
        [1, 0.84599999999999997, 0.80500000000000005, 0.85899999999999999,
            0.47299999999999998, 0.39800000000000002, 0.30099999999999999, 0.38200000000000001],
        [0.84599999999999997, 1, 0.88100000000000001, 0.82599999999999996,
            0.376, 0.32600000000000001, 0.27700000000000002, 0.41499999999999998],
        [0.80500000000000005, 0.88100000000000001, 1, 0.80100000000000005,
            0.38, 0.31900000000000001, 0.23699999999999999, 0.34499999999999997],
        [0.85899999999999999, 0.82599999999999996, 0.80100000000000005, 1,
            0.436, 0.32900000000000001, 0.32700000000000001, 0.36499999999999999],
        [0.47299999999999998, 0.376, 0.38, 0.436,
            1, 0.76200000000000001, 0.72999999999999998, 0.629],
        [0.39800000000000002, 0.32600000000000001, 0.31900000000000001, 0.32900000000000001,
            0.76200000000000001, 1, 0.58299999999999996, 0.57699999999999996],
        [0.30099999999999999, 0.27700000000000002, 0.23699999999999999, 0.32700000000000001,
            0.72999999999999998, 0.58299999999999996, 1, 0.53900000000000003],
        [0.38200000000000001, 0.41499999999999998, 0.34499999999999997, 0.36499999999999999,
            0.629, 0.57699999999999996, 0.53900000000000003, 1],
    ]),
    "unrotated": np.array([
        [0.86136965096805695, 0.14901506807873033, 0.32983153727251557],
        [0.99659162702517567, -0.036705295448141356, -0.021483827838587308],
        [0.88748108028662509, 0.017164221975402065, 0.13909709686656699],
        [0.84090981989215929, 0.11993696740714496, 0.34849794150469854],
        [0.40857539399071024, 0.86168287806842636, -0.022666237566638582],
        [0.35172695020729317, 0.71359771087685442, -0.087828689730068327],
        [0.30057051445834571, 0.69569934072028528, -0.12258975267497428],
        [0.43134425037823454, 0.53053829006998432, -0.20688210806270765],
    ]),
    "uniquenesses": [0.12704799087606272, 0.0050000000000000001, 0.19273471893354369, 0.15703498322705994,
            0.090055006836418067, 0.35935258124807318, 0.4106315445818885, 0.48967105413410922],
    "objective": 0.076412160931649709,
    "STATISTIC": 22.80903003809744,
    "dof": 7,
    "PVAL": 0.0018401369754336057,
    "psych_objective": 0.076411612232085702,
    "psych_STATISTIC": 22.808866251277582,
    "psych_RMSEA": [0.085987417889813553, 0.048352880635925091, 0.12682476946325358],
    "RMSEA_ci_tight": [0.048352886036903089, 0.12682476842468113],
    "TLI": 0.96906074490600858,
    "BIC": -17.233316184974303,
    "null_chisq": 2085.7404778752448,
    "null_dof": 28,
    "null_model": 6.9409000927628774,
}

HARMAN74_3 = {
    "n_obs": 145,
    "k": 3,
    "R": np.array([
        [1, 0.318, 0.40300000000000002, 0.46800000000000003,
            0.32100000000000001, 0.33500000000000002, 0.30399999999999999, 0.33200000000000002,
            0.32600000000000001, 0.11600000000000001, 0.308, 0.314,
            0.48899999999999999, 0.125, 0.23799999999999999, 0.41399999999999998,
            0.17599999999999999, 0.36799999999999999, 0.27000000000000002, 0.36499999999999999,
            0.36899999999999999, 0.41299999999999998, 0.47399999999999998, 0.28199999999999997],
        [0.318, 1, 0.317, 0.23000000000000001,
            0.28499999999999998, 0.23400000000000001, 0.157, 0.157,
            0.19500000000000001, 0.057000000000000002, 0.14999999999999999, 0.14499999999999999,
            0.23899999999999999, 0.10299999999999999, 0.13100000000000001, 0.27200000000000002,
            0.0050000000000000001, 0.255, 0.112, 0.29199999999999998,
            0.30599999999999999, 0.23200000000000001, 0.34799999999999998, 0.21099999999999999],
        [0.40300000000000002, 0.317, 1, 0.30499999999999999,
            0.247, 0.26800000000000002, 0.223, 0.38200000000000001,
            0.184, -0.074999999999999997, 0.090999999999999998, 0.14000000000000001,
            0.32100000000000001, 0.17699999999999999, 0.065000000000000002, 0.26300000000000001,
            0.17699999999999999, 0.21099999999999999, 0.312, 0.29699999999999999,
            0.16500000000000001, 0.25, 0.38300000000000001, 0.20300000000000001],
        [0.46800000000000003, 0.23000000000000001, 0.30499999999999999, 1,
            0.22700000000000001, 0.32700000000000001, 0.33500000000000002, 0.39100000000000001,
            0.32500000000000001, 0.099000000000000005, 0.11, 0.16,
            0.32700000000000001, 0.066000000000000003, 0.127, 0.32200000000000001,
            0.187, 0.251, 0.13700000000000001, 0.33900000000000002,
            0.34899999999999998, 0.38, 0.33500000000000002, 0.248],
        [0.32100000000000001, 0.28499999999999998, 0.247, 0.22700000000000001,
            1, 0.622, 0.65600000000000003, 0.57799999999999996,
            0.72299999999999998, 0.311, 0.34399999999999997, 0.215,
            0.34399999999999997, 0.28000000000000003, 0.22900000000000001, 0.187,
            0.20799999999999999, 0.26300000000000001, 0.19, 0.39800000000000002,
            0.318, 0.441, 0.435, 0.41999999999999998],
        [0.33500000000000002, 0.23400000000000001, 0.26800000000000002, 0.32700000000000001,
            0.622, 1, 0.72199999999999998, 0.52700000000000002,
            0.71399999999999997, 0.20300000000000001, 0.35299999999999998, 0.095000000000000001,
            0.309, 0.29199999999999998, 0.251, 0.29099999999999998,
            0.27300000000000002, 0.16700000000000001, 0.251, 0.435,
            0.26300000000000001, 0.38600000000000001, 0.43099999999999999, 0.433],
        [0.30399999999999999, 0.157, 0.223, 0.33500000000000002,
            0.65600000000000003, 0.72199999999999998, 1, 0.61899999999999999,
            0.68500000000000005, 0.246, 0.23200000000000001, 0.18099999999999999,
            0.34499999999999997, 0.23599999999999999, 0.17199999999999999, 0.17999999999999999,
            0.22800000000000001, 0.159, 0.22600000000000001, 0.45100000000000001,
            0.314, 0.39600000000000002, 0.40500000000000003, 0.437],
        [0.33200000000000002, 0.157, 0.38200000000000001, 0.39100000000000001,
            0.57799999999999996, 0.52700000000000002, 0.61899999999999999, 1,
            0.53200000000000003, 0.28499999999999998, 0.29999999999999999, 0.27100000000000002,
            0.39500000000000002, 0.252, 0.17499999999999999, 0.29599999999999999,
            0.255, 0.25, 0.27400000000000002, 0.42699999999999999,
            0.36199999999999999, 0.35699999999999998, 0.501, 0.38800000000000001],
        [0.32600000000000001, 0.19500000000000001, 0.184, 0.32500000000000001,
            0.72299999999999998, 0.71399999999999997, 0.68500000000000005, 0.53200000000000003,
            1, 0.17000000000000001, 0.28000000000000003, 0.113,
            0.28000000000000003, 0.26000000000000001, 0.248, 0.24199999999999999,
            0.27400000000000002, 0.20799999999999999, 0.27400000000000002, 0.44600000000000001,
            0.26600000000000001, 0.48299999999999998, 0.504, 0.42399999999999999],
        [0.11600000000000001, 0.057000000000000002, -0.074999999999999997, 0.099000000000000005,
            0.311, 0.20300000000000001, 0.246, 0.28499999999999998,
            0.17000000000000001, 1, 0.48399999999999999, 0.58499999999999996,
            0.40799999999999997, 0.17199999999999999, 0.154, 0.124,
            0.28899999999999998, 0.317, 0.19, 0.17299999999999999,
            0.40500000000000003, 0.16, 0.26200000000000001, 0.53100000000000003],
        [0.308, 0.14999999999999999, 0.090999999999999998, 0.11,
            0.34399999999999997, 0.35299999999999998, 0.23200000000000001, 0.29999999999999999,
            0.28000000000000003, 0.48399999999999999, 1, 0.42799999999999999,
            0.53500000000000003, 0.34999999999999998, 0.23999999999999999, 0.314,
            0.36199999999999999, 0.34999999999999998, 0.28999999999999998, 0.20200000000000001,
            0.39900000000000002, 0.30399999999999999, 0.251, 0.41199999999999998],
        [0.314, 0.14499999999999999, 0.14000000000000001, 0.16,
            0.215, 0.095000000000000001, 0.18099999999999999, 0.27100000000000002,
            0.113, 0.58499999999999996, 0.42799999999999999, 1,
            0.51200000000000001, 0.13100000000000001, 0.17299999999999999, 0.11899999999999999,
            0.27800000000000002, 0.34899999999999998, 0.11, 0.246,
            0.35499999999999998, 0.193, 0.34999999999999998, 0.41399999999999998],
        [0.48899999999999999, 0.23899999999999999, 0.32100000000000001, 0.32700000000000001,
            0.34399999999999997, 0.309, 0.34499999999999997, 0.39500000000000002,
            0.28000000000000003, 0.40799999999999997, 0.53500000000000003, 0.51200000000000001,
            1, 0.19500000000000001, 0.13900000000000001, 0.28100000000000003,
            0.19400000000000001, 0.32300000000000001, 0.26300000000000001, 0.24099999999999999,
            0.42499999999999999, 0.27900000000000003, 0.38200000000000001, 0.35799999999999998],
        [0.125, 0.10299999999999999, 0.17699999999999999, 0.066000000000000003,
            0.28000000000000003, 0.29199999999999998, 0.23599999999999999, 0.252,
            0.26000000000000001, 0.17199999999999999, 0.34999999999999998, 0.13100000000000001,
            0.19500000000000001, 1, 0.37, 0.41199999999999998,
            0.34100000000000003, 0.20100000000000001, 0.20599999999999999, 0.30199999999999999,
            0.183, 0.24299999999999999, 0.24199999999999999, 0.30399999999999999],
        [0.23799999999999999, 0.13100000000000001, 0.065000000000000002, 0.127,
            0.22900000000000001, 0.251, 0.17199999999999999, 0.17499999999999999,
            0.248, 0.154, 0.23999999999999999, 0.17299999999999999,
            0.13900000000000001, 0.37, 1, 0.32500000000000001,
            0.34499999999999997, 0.33400000000000002, 0.192, 0.27200000000000002,
            0.23200000000000001, 0.246, 0.25600000000000001, 0.16500000000000001],
        [0.41399999999999998, 0.27200000000000002, 0.26300000000000001, 0.32200000000000001,
            0.187, 0.29099999999999998, 0.17999999999999999, 0.29599999999999999,
            0.24199999999999999, 0.124, 0.314, 0.11899999999999999,
            0.28100000000000003, 0.41199999999999998, 0.32500000000000001, 1,
            0.32400000000000001, 0.34399999999999997, 0.25800000000000001, 0.38800000000000001,
            0.34799999999999998, 0.28299999999999997, 0.35999999999999999, 0.26200000000000001],
        [0.17599999999999999, 0.0050000000000000001, 0.17699999999999999, 0.187,
            0.20799999999999999, 0.27300000000000002, 0.22800000000000001, 0.255,
            0.27400000000000002, 0.28899999999999998, 0.36199999999999999, 0.27800000000000002,
            0.19400000000000001, 0.34100000000000003, 0.34499999999999997, 0.32400000000000001,
            1, 0.44800000000000001, 0.32400000000000001, 0.26200000000000001,
            0.17299999999999999, 0.27300000000000002, 0.28699999999999998, 0.32600000000000001],
        [0.36799999999999999, 0.255, 0.21099999999999999, 0.251,
            0.26300000000000001, 0.16700000000000001, 0.159, 0.25,
            0.20799999999999999, 0.317, 0.34999999999999998, 0.34899999999999998,
            0.32300000000000001, 0.20100000000000001, 0.33400000000000002, 0.34399999999999997,
            0.44800000000000001, 1, 0.35799999999999998, 0.30099999999999999,
            0.35699999999999998, 0.317, 0.27200000000000002, 0.40500000000000003],
        [0.27000000000000002, 0.112, 0.312, 0.13700000000000001,
            0.19, 0.251, 0.22600000000000001, 0.27400000000000002,
            0.27400000000000002, 0.19, 0.28999999999999998, 0.11,
            0.26300000000000001, 0.20599999999999999, 0.192, 0.25800000000000001,
            0.32400000000000001, 0.35799999999999998, 1, 0.16700000000000001,
            0.33100000000000002, 0.34200000000000003, 0.30299999999999999, 0.374],
        [0.36499999999999999, 0.29199999999999998, 0.29699999999999999, 0.33900000000000002,
            0.39800000000000002, 0.435, 0.45100000000000001, 0.42699999999999999,
            0.44600000000000001, 0.17299999999999999, 0.20200000000000001, 0.246,
            0.24099999999999999, 0.30199999999999999, 0.27200000000000002, 0.38800000000000001,
            0.26200000000000001, 0.30099999999999999, 0.16700000000000001, 1,
            0.41299999999999998, 0.46300000000000002, 0.50900000000000001, 0.36599999999999999],
        [0.36899999999999999, 0.30599999999999999, 0.16500000000000001, 0.34899999999999998,
            0.318, 0.26300000000000001, 0.314, 0.36199999999999999,
            0.26600000000000001, 0.40500000000000003, 0.39900000000000002, 0.35499999999999998,
            0.42499999999999999, 0.183, 0.23200000000000001, 0.34799999999999998,
            0.17299999999999999, 0.35699999999999998, 0.33100000000000002, 0.41299999999999998,
            1, 0.374, 0.45100000000000001, 0.44800000000000001],
        [0.41299999999999998, 0.23200000000000001, 0.25, 0.38,
            0.441, 0.38600000000000001, 0.39600000000000002, 0.35699999999999998,
            0.48299999999999998, 0.16, 0.30399999999999999, 0.193,
            0.27900000000000003, 0.24299999999999999, 0.246, 0.28299999999999997,
            0.27300000000000002, 0.317, 0.34200000000000003, 0.46300000000000002,
            0.374, 1, 0.503, 0.375],
        [0.47399999999999998, 0.34799999999999998, 0.38300000000000001, 0.33500000000000002,
            0.435, 0.43099999999999999, 0.40500000000000003, 0.501,
            0.504, 0.26200000000000001, 0.251, 0.34999999999999998,
            0.38200000000000001, 0.24199999999999999, 0.25600000000000001, 0.35999999999999999,
            0.28699999999999998, 0.27200000000000002, 0.30299999999999999, 0.50900000000000001,
            0.45100000000000001, 0.503, 1, 0.434],
        [0.28199999999999997, 0.21099999999999999, 0.20300000000000001, 0.248,
            0.41999999999999998, 0.433, 0.437, 0.38800000000000001,
            0.42399999999999999, 0.53100000000000003, 0.41199999999999998, 0.41399999999999998,
            0.35799999999999998, 0.30399999999999999, 0.16500000000000001, 0.26200000000000001,
            0.32600000000000001, 0.40500000000000003, 0.374, 0.36599999999999999,
            0.44800000000000001, 0.375, 0.434, 1],
    ]),
    "unrotated": np.array([
        [0.53981861332225645, -0.027010964993877493, 0.45640350261707657],
        [0.33983706121860596, -0.050272381876612746, 0.29827424797687885],
        [0.36428518545350297, -0.17548268372215201, 0.41743214872736067],
        [0.45713987529955646, -0.10838541986983882, 0.29139263628032053],
        [0.74480221330276619, -0.20444002628413122, -0.22738175059559013],
        [0.73540821811911183, -0.33244573600041261, -0.17956824688894632],
        [0.73788825206735142, -0.29622028449371651, -0.25941068231582598],
        [0.69474484173749285, -0.12262036173505896, -0.027405505821170982],
        [0.74927744574141497, -0.37871646788165209, -0.19696301541387473],
        [0.50741042805385217, 0.67738770598223697, -0.28871833013749093],
        [0.53955441626295664, 0.35006337200042736, 0.021621153724764145],
        [0.45089176825653809, 0.54695370562438694, 0.061475639631325296],
        [0.57338816751653232, 0.26651196084963796, 0.1757351126729671],
        [0.39344456198341127, 0.020991077887902991, 0.080581663538584258],
        [0.35494362562078641, 0.037700185420687114, 0.15722328291383883],
        [0.43797024330618567, 0.012960231940814174, 0.40591491253921808],
        [0.42943247068580881, 0.15763059471029134, 0.10155274264227042],
        [0.45875266410801635, 0.26404567902016024, 0.29048854957859632],
        [0.41148704315443629, 0.062631776689740043, 0.19587336910408518],
        [0.59765868453220894, -0.12068243001115862, 0.19482909340411636],
        [0.56309974630954651, 0.24655181729948175, 0.20552068086208056],
        [0.59128128106810462, -0.11409372619902927, 0.19996930851477537],
        [0.6669510576083939, -0.036460032105874493, 0.23679451737695059],
        [0.66128450293563401, 0.24373642498661549, -0.056426861203074885],
    ]),
    "uniquenesses": [0.49956211737819645, 0.79301592941301025, 0.66225253491281211, 0.69436606984579119,
            0.35177148057850621, 0.31640983017190005, 0.30048057035297493, 0.50154278952014919,
            0.25636271756462464, 0.20032227830845881, 0.58586919645860303, 0.49375900354767382,
            0.56931455842187639, 0.83826737216990566, 0.84787453839410643, 0.64324718136136061,
            0.78042738956060964, 0.63544227064542602, 0.78838930582175437, 0.5902814729809277,
            0.57989212910724486, 0.59738134608579874, 0.49777530943082204, 0.50011137025495911],
    "objective": 2.2197090153821293,
    "STATISTIC": 295.59125054838688,
    "dof": 207,
    "PVAL": 5.1218673532267167e-05,
    "psych_objective": 2.2197090153821257,
    "psych_STATISTIC": 295.59125054838637,
    "psych_RMSEA": [0.053885741914616904, 0.039694119433754164, 0.068099615638043343],
    "RMSEA_ci_tight": [0.039694119701624453, 0.068099614894923763],
    "TLI": 0.90527444910784327,
    "BIC": -734.5926341326724,
    "null_chisq": 1545.8618633309363,
    "null_dof": 276,
    "null_model": 11.436709223163525,
}


CASES = {"ability_2": ABILITY_2, "harman23_2": HARMAN23_2, "harman23_3": HARMAN23_3,
         "harman74_3": HARMAN74_3}


def _rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_factanal(case):
    ref = CASES[case]
    st = fit_statistics(ref["R"], ref["n_obs"], ref["unrotated"], np.asarray(ref["uniquenesses"]))
    assert _rel(st.objective, ref["objective"]) < 1e-6
    assert _rel(st.chi2, ref["STATISTIC"]) < 1e-6
    assert st.dof == ref["dof"]
    assert _rel(st.p_value, ref["PVAL"]) < 1e-6


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_psych(case):
    ref = CASES[case]
    L0 = ref["unrotated"]
    st = fit_statistics(ref["R"], ref["n_obs"], L0, 1 - np.sum(L0**2, axis=1))
    assert _rel(st.objective, ref["psych_objective"]) < 1e-6
    assert _rel(st.chi2, ref["psych_STATISTIC"]) < 1e-6
    assert _rel(st.rmsea, ref["psych_RMSEA"][0]) < 1e-6
    for ours, psych, tight in zip(st.rmsea_interval, ref["psych_RMSEA"][1:], ref["RMSEA_ci_tight"]):
        if tight == 0:
            assert ours == 0 and psych == 0
        else:
            assert _rel(ours, psych) < 1e-6      # psych's own (uniroot at its default tolerance)
            assert _rel(ours, tight) < 1e-10     # the same roots found to full precision
    assert _rel(st.tli, ref["TLI"]) < 1e-6
    assert _rel(st.bic, ref["BIC"]) < 1e-6
    assert _rel(st.null_chi2, ref["null_chisq"]) < 1e-6
    assert st.null_dof == ref["null_dof"]
    assert _rel(st.null_objective, ref["null_model"]) < 1e-6
    # the definitions spelled out
    n, dof = ref["n_obs"], ref["dof"]
    assert st.aic == pytest.approx(st.chi2 - 2 * dof, rel=1e-14)
    assert st.sabic == pytest.approx(st.chi2 - dof * np.log((n + 2) / 24), rel=1e-14)
    assert st.confidence == 0.9


def test_statistics_are_invariant_to_rotation_and_to_the_scale_of_s():
    from latentmodels.rotations import rotate

    ref = HARMAN74_3
    L0, psi = ref["unrotated"], np.asarray(ref["uniquenesses"])
    base = fit_statistics(ref["R"], ref["n_obs"], L0, psi)
    rot = rotate(L0, "oblimin")
    st = fit_statistics(ref["R"], ref["n_obs"], rot.loadings, psi, phi=rot.factor_correlation)
    assert st.chi2 == pytest.approx(base.chi2, rel=1e-10)
    # a covariance D_c R D_c with loadings D_c Λ and uniquenesses c² ψ: the same statistics
    c = np.linspace(0.5, 3.0, 24)
    st2 = fit_statistics(ref["R"] * np.outer(c, c), ref["n_obs"], L0 * c[:, None], psi * c**2)
    for name in ["objective", "chi2", "p_value", "tli", "rmsea", "bic", "null_chi2"]:
        assert getattr(st2, name) == pytest.approx(getattr(base, name), rel=1e-9), name


def test_end_to_end_with_our_factor_analysis():
    """Our ML fit of Harman74 reproduces factanal's χ² and p-value (it reaches the same optimum)."""
    from latentmodels.fa import FactorAnalysis

    ref = HARMAN74_3
    fa = FactorAnalysis(3).fit_covariance(ref["R"], ref["n_obs"])
    st = fit_statistics(ref["R"], ref["n_obs"], fa.W_, fa.psi_)
    assert _rel(st.chi2, ref["STATISTIC"]) < 1e-6
    assert _rel(st.p_value, ref["PVAL"]) < 1e-6


def test_log_likelihood_field_is_the_models_log_likelihood():
    from latentmodels.fa import FactorAnalysis

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + rng.normal(size=(200, 6))
    fa = FactorAnalysis(2).fit(X)
    Xc = X - X.mean(axis=0)
    st = fit_statistics(Xc.T @ Xc / 200, 200, fa.W_, fa.psi_)
    assert st.log_likelihood == pytest.approx(fa.log_likelihood(X), rel=1e-10)


def test_rmsea_interval_brackets_and_zero_cases():
    from scipy import stats

    lo, hi = rmsea_interval(30.0, 10, 200)
    # the defining equations, checked with scipy's noncentral χ² directly
    assert stats.ncx2.cdf(30.0, 10, hi**2 * 199 * 10) == pytest.approx(0.05, abs=1e-10)
    assert stats.ncx2.cdf(30.0, 10, lo**2 * 199 * 10) == pytest.approx(0.95, abs=1e-10)
    # a χ² below its central 5 % quantile: both bounds 0
    assert rmsea_interval(2.0, 10, 200) == (0.0, 0.0)
    assert all(np.isnan(rmsea_interval(1.0, 0, 100)))


def test_fit_statistics_bad_input():
    ref = ABILITY_2
    L0, psi = ref["unrotated"], np.asarray(ref["uniquenesses"])
    with pytest.raises(ValueError, match="agree"):
        fit_statistics(ref["R"], 112, L0[:5], psi)
    with pytest.raises(ValueError, match="psi"):
        fit_statistics(ref["R"], 112, L0, -psi)
    with pytest.raises(ValueError, match="n_samples"):
        fit_statistics(ref["R"], 1, L0, psi)
    with pytest.raises(ValueError, match="confidence"):
        fit_statistics(ref["R"], 112, L0, psi, confidence=1.5)


# ---- summary ---------------------------------------------------------------------------------

class _Fitted:
    """A stand-in for a fitted, rotated FactorAnalysis (duck typing, as diagnostics.summary reads it)."""

    def __init__(self, ref, method):
        from latentmodels.rotations import rotate

        rot = rotate(ref["unrotated"], method)
        self.W_ = ref["unrotated"]
        self.psi_ = np.asarray(ref["uniquenesses"])
        self.loadings_, self.factor_correlation_ = rot.loadings, rot.factor_correlation
        self.rotation = method
        self.sample_covariance_ = ref["R"]
        self.n_samples_ = ref["n_obs"]


def _row(text, name):
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return line[len(name):].split()


def test_summary_orthogonal():
    ref = ABILITY_2
    m = _Fitted(ref, "varimax")
    names = ["general", "picture", "blocks", "maze", "reading", "vocab"]
    text = summary(m, names=names, cutoff=0.2)
    L = m.loadings_
    h2 = np.sum(L**2, axis=1)
    # each variable: its loadings (blank below the cutoff), h2 and u2
    for i, name in enumerate(names):
        cells = _row(text, name)
        shown = [f"{v:.3f}" for v in L[i] if abs(v) >= 0.2]
        assert cells == shown + [f"{h2[i]:.3f}", f"{ref['uniquenesses'][i]:.3f}"]
    ss = np.sum(L**2, axis=0)
    assert _row(text, "SS loadings") == [f"{v:.3f}" for v in ss]
    assert _row(text, "Cumulative Var")[-1] == f"{ss.sum() / 6:.3f}"
    # rows grouped by their largest loading, each group by decreasing size (psych's fa.sort)
    order = [ln.split()[0] for ln in text.splitlines() if ln.split() and ln.split()[0] in names]
    big = np.argmax(np.abs(L), axis=1)
    key = [(big[names.index(v)], -np.abs(L[names.index(v), big[names.index(v)]])) for v in order]
    assert key == sorted(key)
    assert "Factor correlations" not in text
    assert f"chi-square = {ref['STATISTIC']:.4f} on 4 degrees of freedom" in text
    assert "rotation: varimax" in text


def test_summary_oblique_standardises_covariance_input():
    ref = HARMAN74_3
    m = _Fitted(ref, "oblimin")
    text = summary(m, cutoff=0.0, sort=False)
    assert "Factor correlations:" in text and "pattern matrix" in text
    Phi = m.factor_correlation_
    assert _row(text, "F2")[:3] == [f"{v:.3f}" for v in Phi[1]]
    ss = np.einsum("ij,ij->j", m.loadings_ @ Phi, m.loadings_)
    assert _row(text, "SS loadings") == [f"{v:.3f}" for v in ss]
    # the same model on the covariance scale prints the same standardised table
    c = np.linspace(0.5, 3.0, 24)
    m.loadings_ = m.loadings_ * c[:, None]
    m.psi_ = m.psi_ * c**2
    m.sample_covariance_ = ref["R"] * np.outer(c, c)
    assert summary(m, cutoff=0.0, sort=False) == text


def test_summary_needs_loadings():
    with pytest.raises(ValueError, match="fitted model"):
        summary()


# ---- choosing L ------------------------------------------------------------------------------

def test_minka_matches_scikit_learn():
    """A second implementation: scikit-learn's _assess_dimension (PCA(n_components='mle'))."""
    _pca = pytest.importorskip("sklearn.decomposition._pca")
    rng = np.random.default_rng(2)
    spectrum = np.sort(rng.gamma(2.0, size=9))[::-1]
    for k in range(1, 9):
        assert minka_log_evidence(spectrum, k, 57) == pytest.approx(_pca._assess_dimension(spectrum, k, 57),
                                                                     rel=1e-12)
    # k = 0: only the isotropic term −(N d/2) log(mean λ)
    assert minka_log_evidence(spectrum, 0, 57) == pytest.approx(-57 * 9 / 2 * np.log(spectrum.mean()),
                                                                 rel=1e-14)


def _fa_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(8, 2)) * 1.5
    return rng.normal(size=(n, 2)) @ W.T + rng.normal(size=(n, 8)) * np.sqrt(rng.uniform(0.3, 1.0, 8))


# L = 3, 4 overfit two true factors: FA warns of Heywood cases there, as it should
@pytest.mark.filterwarnings("ignore:uniqueness psi_")
def test_choose_n_components_fa():
    from scipy import stats

    X = _fa_data()
    table = choose_n_components(X, 4, "fa", test_fraction=0.25, random_state=0)
    assert isinstance(table, DimensionTable)
    assert list(table.n_components) == [0, 1, 2, 3, 4]
    assert table.n_train == 450 and table.n_test == 150
    assert table.best("bic") == 2
    assert table.best("chi2") == 2
    assert table.best("heldout") == 2
    assert np.all(np.diff(table.log_likelihood) > -1e-9)          # nested models: ℓ̄ cannot fall
    assert list(table.n_parameters) == [16, 24, 31, 37, 42]
    assert "chi2" in str(table)
    # L = 0 is the independent Gaussian, and its χ² the test of independence
    full = choose_n_components(X, 1, "fa", test_fraction=0.0)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    assert full.log_likelihood[0] == pytest.approx(np.mean(np.sum(stats.norm.logpdf(X, mu, sd), axis=1)),
                                                   rel=1e-12)
    S = np.cov(X.T, bias=True)
    null = fit_statistics(S, 600, np.zeros((8, 1)), np.diag(S))
    assert full.chi2[0] == pytest.approx(null.null_chi2, rel=1e-10)
    assert full.dof[0] == 28
    # the table's likelihoods are the fitted models' own
    assert full.log_likelihood[1] == pytest.approx(full.models[1].log_likelihood(X), rel=1e-12)
    assert np.isnan(full.heldout_log_likelihood).all()


def test_choose_n_components_ppca_minka():
    from scipy import stats

    rng = np.random.default_rng(5)
    W = rng.normal(size=(10, 3)) * 2
    X = rng.normal(size=(500, 3)) @ W.T + 0.5 * rng.normal(size=(500, 10))
    table = choose_n_components(X, 6, "ppca", test_fraction=0.0)
    assert table.best("minka") == 3
    assert table.best("bic") == 3
    sk = pytest.importorskip("sklearn.decomposition")
    assert sk.PCA(n_components="mle").fit(X).n_components_ == 3
    mu, S = X.mean(axis=0), np.cov(X.T, bias=True)
    iso = stats.multivariate_normal(mu, np.trace(S) / 10 * np.eye(10))
    assert table.log_likelihood[0] == pytest.approx(np.mean(iso.logpdf(X)), rel=1e-12)
    assert table.log_likelihood[2] == pytest.approx(table.models[2].log_likelihood(X), rel=1e-12)
    assert np.isnan(table.chi2).all()
    assert "Minka" in str(table)


def test_choose_n_components_bad_input():
    X = _fa_data(50)
    with pytest.raises(ValueError, match="model"):
        choose_n_components(X, 2, "pca")
    with pytest.raises(ValueError, match="max_components"):
        choose_n_components(X, 8, "ppca")
    with pytest.raises(ValueError, match="test_fraction"):
        choose_n_components(X, 2, test_fraction=1.0)
    with pytest.raises(ValueError, match="criterion"):
        choose_n_components(X, 1).best("aic")


def test_summary_of_a_ppca_model():
    from latentmodels.ppca import PPCA

    X = _fa_data(200)
    ppca = PPCA(2).fit(X)
    text = summary(ppca)
    sd = np.sqrt(np.sum(ppca.W_**2, axis=1) + ppca.sigma2_)
    u2 = ppca.sigma2_ / sd**2
    assert _row(text, "x1")[-1] == f"{u2[0]:.3f}"
    assert "rotation: none" in text and "chi-square" not in text   # no S stored: no test


def test_choose_n_components_names_constant_columns_for_fa():
    # the digits have 3 constant pixels; FA on them used to fail deep inside (RuntimeWarnings from
    # log(0), then "S has a non-positive variance"), naming an S the user never passed
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 5))
    X[:, 3] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X has 1 feature\(s\) constant .* \(columns \[3\]\)"):
            choose_n_components(X, 2, model="fa", random_state=0)
        tab = choose_n_components(X, 2, model="ppca", random_state=0)   # PPCA is defined there
    assert np.all(np.isfinite(tab.log_likelihood))


def test_fit_statistics_warns_when_n_is_too_small_for_bartletts_correction():
    # N - 1 - (2D + 5)/6 - 2L/3 <= 0: psych reports chi2 = 0, p = 1 ("perfect fit") silently
    rng = np.random.default_rng(1)
    W, psi = rng.standard_normal((7, 2)), rng.uniform(0.2, 1.0, 7)
    S = W @ W.T + np.diag(psi) + 0.05
    with pytest.warns(UserWarning, match="too small for the chi-square test"):
        fit_statistics(S, 5, W, psi)        # 5 - 1 - 19/6 - 4/3 < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_statistics(S, 6, W, psi)        # 6 - 1 - 19/6 - 4/3 = 0.5 > 0


def test_no_test_is_printed_at_zero_or_negative_degrees_of_freedom():
    # R: factanal(covmat=cor(attitude)[1:3, 1:3], factors=1, n.obs=30)$dof is 0 and no STATISTIC;
    # factanal(covmat=cor(attitude), factors=4, n.obs=30) stops: "4 factors are too many for 7
    # variables"; psych::fa reports PVAL = NA and no RMSEA in both cases
    rng = np.random.default_rng(2)
    W1, p1 = rng.standard_normal((3, 1)), rng.uniform(0.2, 1.0, 3)
    S1 = W1 @ W1.T + np.diag(p1)
    st0 = fit_statistics(S1, 50, W1, p1)
    assert st0.dof == 0 and np.isnan(st0.p_value) and np.isnan(st0.rmsea) and np.isnan(st0.bic)
    assert "No test" in str(st0) and "saturated" in str(st0) and "p =" not in str(st0)
    W2 = rng.standard_normal((3, 2))
    st_neg = fit_statistics(W2 @ W2.T + np.diag(p1), 50, W2, p1)
    assert st_neg.dof == -2 and np.isnan(st_neg.p_value)
    assert "more free parameters" in str(st_neg) and "RMSEA" not in str(st_neg)


def test_best_names_the_missing_column_instead_of_all_nan_slice():
    # numpy's "All-NaN slice encountered" said nothing about test_fraction=0 or model='fa'
    X = np.random.default_rng(0).standard_normal((60, 4))
    tab = choose_n_components(X, 1, test_fraction=0, random_state=0)
    with pytest.raises(ValueError, match="test_fraction=0"):
        tab.best("heldout")
    with pytest.raises(ValueError, match="model='ppca'"):
        tab.best("minka")
    assert tab.best("bic") in (0, 1)


def test_choose_n_components_refuses_entries_whose_squares_overflow_by_name():
    # X * 1e160 gave a RuntimeWarning (overflow in S) and LinAlgError "Eigenvalues did not converge"
    X = np.random.default_rng(0).standard_normal((40, 4))
    for model in ("fa", "ppca"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="X has entries up to .* rescale X"):
                choose_n_components(X * 1e160, 1, model=model, random_state=0)


def test_bic_counts_no_more_parameters_than_the_saturated_gaussian():
    # D = 4: L = 3, 4 have dof < 0 and fit the sample covariance exactly (the saturated model,
    # D + D(D+1)/2 = 14 parameters); counting D + DL - L(L-1)/2 + D = 17, 18 over-penalised them
    from scipy import stats

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # Heywood cases at L >= 3
        tab = choose_n_components(X, 4, "fa", test_fraction=0.0)
    assert list(tab.n_parameters) == [8, 12, 14, 14, 14]
    sat = stats.multivariate_normal(X.mean(axis=0), np.cov(X.T, bias=True)).logpdf(X).mean()
    np.testing.assert_allclose(tab.log_likelihood[3:], sat, rtol=1e-6)
    np.testing.assert_allclose(tab.bic[3:], -2 * 40 * sat + 14 * np.log(40), rtol=1e-6)
