"""The tumour twin (issue #18): growth laws, treatment effects, batched fitting, forecasts with intervals.

Domain only (numpy, scipy): :mod:`growth` (seven laws, closed forms and ODEs), :mod:`models` (the laws on
:class:`medtwin.model.spec.Model`), :mod:`treatment` (Norton-Simon, log-kill, two populations, LQ
radiotherapy, BED/EQD2), :mod:`fitting` (batched Levenberg-Marquardt MAP over lesions, population priors,
AIC/BIC), :mod:`measurements` (checked input, single-lesion fit with fallbacks), :mod:`intervals`
(calibrated prediction intervals), :mod:`battle` (TumorGrowth.jl's model-battle protocol on arrays).
"""
