"""One house for every mechanistic model: declarations, one generic simulate/fit/assimilate/what-if path.

Design (issue #12, items 1, 2 and 8)
====================================

**A model is data plus a pure function** (:mod:`medtwin.model.spec`). :class:`~medtwin.model.spec.Model`
declares, each with a unit: its states, its parameters (name, unit, default, population distribution as a
log-normal SD, bounds of the documented range, source), its inputs (piecewise-constant rates such as
carbohydrate g/min or an infusion mg/h), its dose routes (instantaneous jumps into a state: a bolus, an oral
dose with a parameter-given lag) and its observable outputs. The right-hand side ``rhs(t, y, p, u)`` is pure
and vectorised over a batch axis: ``y`` (N, states), ``p`` (N, parameters), ``u`` (N, inputs). Everything a
simulator used to special-case is declared by the model instead:

* ``dose routes`` (:class:`~medtwin.model.spec.DoseRoute`): which state a dose lands in, a per-patient scale
  (e.g. ``6000 / BW`` for insulin units to pmol/kg, ``F`` for oral bioavailability) and an optional lag
  parameter (``tlag``);
* ``on_input_step(t, y, p, u_new, u_old)``: a jump the model makes when its inputs step (UVA/Padova's
  last-meal memory ``D``), and ``input_stops(u)`` which input steps need an exact solver stop;
* ``drifting``: the parameters an ensemble Kalman filter may estimate online;
* ``derive``: derived parameters recomputed from the others after a fit or a population draw moved them
  (UVA/Padova's basal steady state: ``Vm0``, ``kp1``, ``u2ss`` from ``Gb``, ``Ib``, ``EGPb``);
* ``analytic``: an optional closed-form solution; :func:`~medtwin.model.simulate.simulate` dispatches to it
  (the PK superposition of exponentials) and integrates otherwise;
* ``rhs_scalar``: an optional plain-float right-hand side for a single patient (numpy's per-call overhead
  dominates at N = 1; UVA/Padova's 24 h single-patient latency needs it).

**Parameter sets are data files** (:mod:`medtwin.model.parameters`): CSV with the unit in every column name
(``"R [mmHg*s/mL]"``) and the citation in ``#`` comment lines; the loader checks every column against the
model's declared parameter and unit and refuses a file without a source.

**A scenario is a generic timeline** (:class:`~medtwin.model.timeline.Timeline`): output times, an input
schedule (step times and values per patient) and doses (time, route, amount; an amount may be decided at
its time from the state, as a bolus calculator does). ``Timeline.from_dict`` reads the JSON an API or a CLI
receives and names the field at fault.

**Solvers know no model** (:mod:`medtwin.solve`): a solver is any object with
``run(f, y0, t_out, stops, on_breakpoint, out)``; :func:`medtwin.solve.integrate` calls it without an
``isinstance``. The generic simulator turns a model and a timeline into ``f``, the stops (input steps the
model asks for, dose times) and the jump function.

**The generic path** (one module each, all batched over N parameter rows, randomness only through an explicit
``numpy.random.Generator``):

* :func:`~medtwin.model.simulate.simulate` ``(model, params[N, P], timeline, solver)``;
* :class:`~medtwin.model.fit.MapFit`: MAP with the model's log-normal priors and a Laplace covariance,
  estimator style (configuration in the constructor, ``fit(observations)`` returns self, results end in ``_``);
* :class:`~medtwin.model.assimilate.EnsembleFilter`: a stochastic ensemble Kalman filter on the states and the
  log multipliers of the model's declared drifting parameters; its state round-trips through JSON;
* :func:`~medtwin.model.whatif.compare`: scenarios over a posterior ensemble, median and 5-95 % bands.

UVA/Padova (:mod:`medtwin.physiology.uva_padova`) and the compartmental PK models
(:mod:`medtwin.pharmaco.pk_model`) implement the interface; their long-standing entry points
(``simulate_inputs``, ``pharmaco.pk.simulate``, ``physiology.whatif.compare_regimens``) keep their results.

**Twin kinds are plug-ins** (:mod:`medtwin.model.kinds`): a :class:`~medtwin.model.kinds.TwinKind` names its
model, the record data (LOINC) and device metrics it consumes, what it personalises from which observation,
what it forecasts, the alert rules it contributes (by name) and the dashboard panel descriptor. Kinds come
from the ``medtwin.twin_kinds`` entry-point group (a third-party package adds one in its own
``pyproject.toml``) or from :func:`~medtwin.model.kinds.register` (tests). The API
(``api/routers/twins.py``) and the CLI (``medtwin twin ...``) serve every registered kind through the
generic path; ``tests/conformance/`` checks every registered model, kind and drug.
"""
