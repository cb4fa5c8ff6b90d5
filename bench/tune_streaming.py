"""Tuning harness for ``aiops.detect.streaming.StreamingDetector`` on the NAB copy.

Runs the detector over every NAB file (a process pool over files; the detector itself is single-threaded), scores
the outputs with NAB's rules (BENCHMARKS.md §1.4: probation, scaled sigmoid, one optimised global threshold per
profile, null/perfect normalisation) and prints the three normalised scores plus time per 1,000 points. It also
prints the published detectors' scores on the same files (their per-file scores at the published thresholds).

    .venv/bin/python -m bench.tune_streaming --data bench/data/nab [--set key=value ...]
    .venv/bin/python -m bench.tune_streaming --data bench/data/nab --cv

``--cv`` runs the detector once per file with the model settings (``--set``), records every channel's raw score,
then replays only the post-processing (``recent``, ``suppress``, ``escalation``, ``novelty``) through the
detector's own ``_post`` for each setting of a small grid: exact, and ~1 s per setting instead of a full run. The
grid is tuned on one half of the categories and checked on the other, both ways (fold A: artificialNoAnomaly,
artificialWithAnomaly, realKnownCause; fold B: realAWSCloudwatch, realAdExchange); the categories held out of this
copy were never seen.

The private scorer here exists so tuning did not wait for ``bench/nab_scoring.py``; ``bench/nab.py`` is the
reference runner (both give the same numbers, e.g. 60.23 / 47.11 / 66.24 at alarm_level 0.52).

Tuning notes (41-file copy, 69 windows; standard / low-FP / low-FN; ARTime 69.08, numenta 68.58 on these files).
Everything was tried with ONE configuration for all files; the held-out categories were never touched.
* KNN(k=10, mean) on 6-value windows, history 1500, refit 50, Numenta-style anomaly likelihood of the raw
  distance (Gaussian tail of a short mean vs long-window stats): 15.8 (log raw: 22-27 with suppression). The raw
  distances are heavy-tailed and bursty, so the Gaussian tail fires all the time. Conformal-rank raw + likelihood: 0.
* Raw distance divided by the max of the previous L raw scores, x/(1+x): L=300 47.3, L=500 47.0, L=2000 36,
  all-past 28. A decaying envelope instead of a window: 35-41. Mixing in absolute distance (x = r/max^a): no gain.
* Suppression after an alarm (alarm_level 0.52): 50-100 points +2..+6; 300-600 points hurts (-10..-20).
* Window 3: 44-49, window 19: 42-43, coarse block means (12x4) added: no gain (56.8 vs 60.2 at the final setup).
* History 4000 (+5), 8000 (same as 4000); scaling by the 5-95% range instead of min-max (+1.5, 58.75);
  refit every 100 instead of 50 (60.23, and twice as fast). k=5 56.3, k=20 59.3; LOF instead of KNN 47.4;
  window 8 59.5; scale quantile 0.1 58.0; recent 400 + suppress 75: 53.8.
* alarm_level 0.52 -> 0.51: 61.81 / 50.27 / 67.30; 0.50 ("any new recent record starts a quiet spell"): 61.10 /
  48.69 / 66.82, kept as the default because it is the principled value, not the best-scoring one.
  warmup 300: 60.47 (alone), 59.08 (with 0.51).
* Final defaults of that first version: 61.10 / 48.69 / 66.82, ~0.6-0.9 s per 1,000 points on one core.
  The score surface is bumpy in recent/suppress (+-5 points), so treat the last digit as noise.

Second round (issue 3: beat ARTime 69.08 / numenta 68.58). Explored on recorded raw scores with the post-processing
replayed; standard profile unless said; "+ch" = an extra channel whose ratio joins the max.
* Escalation through suppression (a point during the quiet spell still alarms if it beats the alarm's score by a
  margin): suppress 50 + margin 0.1: 62.5 (from 61.1); margins 0 / 0.05 / 0.2: 59.2 / 62.0 / 62.7; suppress 100-400
  with any margin: 59.7 down to 50.
* Forecast residuals as channels (|x - x_prev|, |x - EWMA| with alpha 0.5 / 0.2 / 0.05), ratio to the recent max,
  alone 42-45, with KNN by max 50-53, by mean 47-52: worse. As never-seen-before channels (memory 4000) on top of
  the final three: 63.4 / 64.7 / 65.0 (worse than without).
* Normalising by a high quantile of the recent raw scores instead of the max (q 0.99-0.999, L 500-3000): 38-62.7.
* Extra channels judged against the recent 500-max and combined by max: level KNN 57.0, trend KNN (6 means of
  8 points) 58.4, ECOD on the window 58.3: each adds more false alarms than hits. The same channels judged against
  their whole-history max (memory 1000 / 2000 / 4000): level 61.5 / 63.1 / 63.8, trend 61.7 / 63.7 / 63.9,
  ECOD 58.1-60.2, KNN on differences 60.3-61.6. Level + trend together (memory 4000 = 8000): 65.2; with suppress 75
  and margin 0.2: 66.2 (the chosen setting; 66.52 in the real detector).
* On top of those three: trend with 4-point blocks, KNN on 12 values, HBOS / ECOD on the window, KNN on
  differences: 66.1 / 66.0 / 64.7 / 63.5 / 66.0 (no gain, so not added).
* Channel weights (level / trend ratio x0.8-x1.5 before the max): 62.2-66.3, equal weights are the local optimum.
* Capping what enters a channel's memory at 1.5 / 2 / 4 / 10 x the previous max (so one huge spike does not hide
  the next event): 63.2-66.2, no gain. Requiring the shape ratio to beat beta x the 4000-point max as well
  (beta 0.2-0.7): 49.6-57.9, much worse: local surprise is what works.
* Mean-removed windows (pure shape, the level left to the level channel) as the shape channel: 56.4; added as a
  fourth channel: 66.0 (whole-history memory) / 63.1 (recent memory).
* A shape memory growing with the stream (max(500, t x 0.05-0.2), at most 4000) against long-file false alarms:
  62.5-65.1, no gain.
* Numenta-style anomaly likelihood on the combined score (short 1/3/10, long 1000/8640): 10.6-39.2 alone; as a max
  with the score 59.6-66.2 (never better).
* Shape channel with the final post-processing: window 4 / 8 / 12: 61.9 / 62.6 / 65.1 (6: 66.2); k=5: 61.9.
  A daily-lag channel (KNN on x_t - x_{t-1 day}, lag from the timestamps, whole-history memory): 66.8, +0.6 for a
  time-dependent knob and 2x the cost, not added.
* ``--cv`` (real detector, grid recent 300/500/700 x suppress 50/75/100 x escalation 0.1/0.2/0.3/1.0 x novelty
  off/on, standard profile): the default (500, 75, 0.2, on) scores A 70.04, B 65.73, all 66.52. Tuned on A alone
  the grid picks (500, 75, 0.2, off): A 70.26, held-out B 58.94; tuned on B alone (300, 100, 0.2, on): B 66.77,
  held-out A 51.60. The novelty channels cost 0.2 on A and gain 6.8 on B at the default; ``recent`` does not
  transfer between folds (300 is best on B, worst on A), so it stays at the first version's 500.

Third round (issue 3, ideas for the missed absences and the long files' false alarms; none kept). Method: each
candidate channel computed on its own with the detector's schedule (warm-up 150, refit every 100 on the last 4,000
points, 5-95 % scaling, KNN k=10 mean, 1e-4 jitter, each point scored by the model fitted before it), then added as a
fourth channel to the recorded shape / level / trend raws of the default run and replayed through the same
post-processing (whole-history memory 4,000 unless said; the replay of the three channels alone reproduces A 70.04,
B 65.73, all 66.52 / 56.93 / 71.82). Scores are standard A / B / all-standard (fold thresholds optimised per fold,
as in ``--cv``); a change had to beat 70.04 on A AND 65.73 on B.
* Volatility channel, two-sided (KNN on log(dispersion of the last w scaled values + 1e-3)): std w=24 69.38 / 63.11
  / 64.61, w=12 68.94 / 65.30 / 65.77, w=48 69.16 / 65.61 / 66.12, mean |diff| w=24 69.38 / 62.62 / 64.29, 3 blocks of
  12 69.82 / 65.53 / 66.23; range (max - min) w=24 70.46 / 65.48 / 67.29 (eps 1e-2 the same), w=16 68.50 / 64.98,
  w=32 68.96 / 63.49, 2 blocks 68.72 / 65.73, k=30 68.96 / 65.48; memory 1000 / 2000 / 8000: 63.22 / 64.39,
  68.27 / 67.47, 68.96 / 65.48. Only a 1.1 weight on its ratio beats both folds (70.68 / 67.74 / 68.81), while 0.8,
  0.9 and 1.0 do not: a lone peak of a bumpy surface, not kept.
* Quietness channel, one-sided (the log range clipped from above at the median of the training rows' values, so
  only "quieter than usual" is far from the crowd): w=24 69.37 / 66.33 / 67.43 (catches iio window 0 and nyc_taxi
  window 1, adds 19 false alarms), w=16 66.79 / 66.74, w=12 66.19 / 64.37, clip at the 35 % / 25 % quantile 67.61 /
  65.97, 68.05 / 63.48, ranges over 12+24+48 (3-D) 67.89 / 64.80, 16+32 68.23 / 65.26, k=30 68.71 / 64.49, k=3
  68.93 / 62.65, weight 0.8 / 0.9 / 1.1 69.81 / 64.86, 69.59 / 66.33, 68.93 / 66.31, memory 1000 / 2000 / 8000 60.03
  / 65.77, 65.78 / 66.77, 68.08 / 66.33; with the two-sided range channel as well 69.15 / 66.33. Clipped instead at
  the median of the previous 96 / 120 log ranges (quiet relative to the recent past): 70.82 / 64.91, 70.35 / 65.01
  (q 0.25: 70.25 / 64.80; w=12 over 48: 68.57 / 66.77). Log range of the last w relative to the last 144 / 96 (a
  scale-free "quieter than the last day or so"): w=24 69.58 / 65.61, clipped 69.58 / 65.02, w=12 over 96 clipped
  68.79 / 67.84. A trailing run length of equal values (flat stretch) w=24 / 64: 52.34 / 63.90, 54.56 / 63.77.
  None catches the two flat-stretch misses (rogue_agent_key_hold window 0, ec2_disk_write_bytes_c0d644 window 2):
  those series are already mostly flat in their history, so a flat stretch is no novelty there.
  (Beware: an earlier version of this experiment took the clip from the scored 100-point block itself, i.e. from
  up to 99 future points; it scored up to 71.35 / 70.19 / 68.61, a pure look-ahead artefact.)
* A minimum relative margin on the novelty channels (their ratio divided by 1.05 / 1.1 / 1.2 before the max, with
  the quietness channel): 65.38 / 64.29, 68.49 / 65.63, 68.91 / 62.25: fewer false alarms but later or lost hits.
* Probation-aware muting (the models learn from point 150, every memory fills, but scores are 0 before point P):
  P 200 / 250 / 300 / 400: 70.04 / 65.61, 70.04 / 65.73 (= default), 70.04 / 65.42, 70.26 / 57.24: no gain (short
  files have windows right after their probation, at point ~220).
* A CAD-OSE-like contextual channel was not tried: it is not a PyOD model, and the daily-lag channel (the PyOD
  stand-in for context, above) gave +0.6 at twice the cost.
* An uncapped run length of exactly repeated values (log1p, KNN, whole-history memory) for the flat-stretch misses:
  52.34 / 64.17 / 58.98 (linear 51.90 / 63.26): quantised series have short equal runs everywhere, each longest-yet
  run is a record, and the two flat-stretch windows are still missed (a run's record is a tiny step in KNN distance).
* The shape channel itself (recomputed alone, reproducing the default exactly): KNN "largest" 65.05 / 64.71 / 64.67,
  "median" 66.54 / 60.97 / 62.58 (k=20 62.20 / 64.71); averaging its ratio with a second shape channel (window 4 /
  12, mean or geometric mean) before the max: 66.92 / 63.27, 66.69 / 63.52, 69.56 / 60.94, 69.26 / 61.72.
* ``recent`` in time instead of points (1 / 2 / 3 / 5 / 7 days, from the sampling interval): 35.70 / 60.51, 55.51 /
  61.28, 50.90 / 58.28, 48.67 / 59.35, 47.85 / 59.97: much worse (hourly files get a memory of 24-168 points).
* Where the loss is (default, standard, pooled threshold 0.508): 122 false alarms cost ~13.4 raw points (113 of
  them are shape-channel records), 13 missed windows ~24, detections late in their window ~7 (most alarms land at
  the labelled point, the middle of the window, worth 0.86). Of the misses only nyc_taxi window 1 (ratio 1.17, score
  0.504 after the escalation rule) and iio window 0 (trend ratio 0.93, suppressed) are near the bar; the others peak
  at ratios 0.04-0.75, and c0d644 window 2 at 0 (a 400-point run of zeros after an unlabelled 200-point one).
* Alarm-rate control (every ratio divided by 1 + beta x the number of alarms in the last M points, so a series
  that keeps breaking its records raises its own bar): M 1000 / 2000 / 4000 x beta 0.02 / 0.05 / 0.1: A 56.4-69.9,
  B 54.5-62.2, all 56.0-64.2; on the shape channel only (M 2000, beta 0.05 / 0.1): 66.49 / 62.23, 66.63 / 63.06.
  True detections are mostly barely-records (median alarm score 0.57, 10th percentile 0.509), so any higher bar
  loses hits faster than it saves false alarms.
* A detrended-level channel (the mean of the last s values minus the median / mean of the last L, KNN,
  whole-history memory) for small bumps: s=1 L=144 69.82 / 65.73, s=8 L=144 69.85 / 63.38, s=8 L=96 70.06 /
  65.50, s=4 L=48 69.60 / 65.36: no gain.
* ``alarm_level`` re-checked on the three-channel version (an alarm between 0.5 and the pooled threshold 0.508
  starts a quiet spell without counting, e.g. nyc_taxi window 1): 0.505 / 0.51 / 0.515 / 0.52 / 0.53: A 68.88 / 70.16
  / 68.54 / 67.65 / 64.35, B 64.61 / 64.29 / 63.67 / 63.42 / 62.47, all 66.16 / 65.58 / 64.28 / 63.49 / 61.07: 0.5
  stays.
* k of the level and trend channels (shape keeps 10): k=5 69.82 / 64.99 / 66.51, k=20 70.04 / 63.03 / 65.09 (10:
  70.04 / 65.73 / 66.52).
Result of the third round: nothing beat the default on both folds; the defaults are unchanged (66.52 / 56.93 /
71.82). The candidate channels were computed with a scratch copy of the detector's refit loop and replayed through
``_post``'s logic, not committed; the replay of the default channels matched the real detector to the last digit.

Fourth round (third session; ideas from ARTime's published source, which normalises by the whole file's min/max and
sizes its downsampling from the file length: neither is allowed here, both are look-ahead). ``--perfile`` prints
each file's raw score at the pooled threshold beside ARTime's and numenta's published per-file scores. The gap to
ARTime is concentrated: grok_asg_anomaly -3.7 raw (two windows missed: the onset of a 36/31 oscillation, and a
spike to 46 that is not a record because an earlier dip to 23 set the level channel's bar), rds_cc0c53 -2.0,
ec2_cpu_24ae8d -1.8, exchange-4_cpc -1.4, nyc_taxi -1.4, machine_temperature -1.1 and asg_misconfiguration -1.2 (21
and 22 false alarms); we lead on rogue_agent_key_updown +2.9, exchange-2_cpm +1.8, ec2_request_latency +1.3. Scores
A / B / all-standard, as in round three (a change had to beat A 70.04 AND B 65.73):
* Seed of the jitter 1 / 2: 69.60 / 65.73 / 66.44, 69.80 / 65.73 / 66.44: differences below ~0.2 are noise.
* ARTime-style denoising before the features: values within c of the history's median set to the median (c 0.075 /
  0.15 of the 5-95 % range): 69.07 / 64.23 / 65.25, 65.97 / 64.58 / 65.08; values rounded to 1/40 of the range
  67.32 / 65.15 / 64.99.
* Spike-preserving downsampled trend (per 8-point block its max and min instead of its mean; mean + max + min; mean +
  range): 70.04 / 63.40 / 65.41, 70.04 / 65.04 / 66.00, 70.26 / 63.34 / 65.05; block max / min as a fourth channel
  69.82 / 65.49 / 66.29.
* Agreement between channels: adding g x the second-largest ratio (g 0.1 / 0.25 / 0.5) 59.30 / 62.48, 51.23 / 63.67,
  51.84 / 60.28 (non-records become records); the same only once the largest is a record (g 0.1 / 0.3) 69.98 /
  65.00, 70.06 / 64.69.
* Memory that does not rise with alarms (raws inside a quiet spell enter the memory capped at the previous max):
  62.02 / 61.04; every raw capped at 1.0 / 1.2 x the previous max: 34-43 / 65.71 / 63.65. Raising the bar after
  each event is what keeps the false alarms down.
* A quiet spell extended by every later record (25 / 50 / 75 points): 69.01 / 63.87, 65.03 / 61.74, 65.47 / 61.87;
  quiet spells per channel (a record in a channel that did not raise the alarm still alarms; novelty mute 75 /
  150 / 300): 68.74 / 65.11, 68.74 / 64.99, 69.18 / 65.10.
* Inner model of the shape channel with the current post-processing: LOF 60.11 / 55.55 / 55.44, IForest 44.25 /
  60.06 / 50.96 (KNN 70.04 / 65.73 / 66.52).
* One-sided novelty memories (a level above the history's median and one below it keep separate bars, so an old
  dip does not hide a new high): level split 69.17 / 64.83 / 65.55, level and trend split 68.51 / 62.84 / 64.05.
Result of the fourth round: no change kept; the detector is seed-stable and the defaults stay.

Fifth round (fourth session; other models of "normal" rather than more post-processing; same method and bar, A / B /
all-standard, the default being 70.04 / 65.73 / 66.52):
* Rank (ECDF) transform: each value replaced by its mid-rank among the 4,000 training values, so that a window with
  several unusual values beats one with a single extreme one (the grok_asg oscillation onset). Windows of 6 ranks as
  a fourth channel, memory 500 / 1000 / 2000 / 4000: 56.19 / 63.42, 63.63 / 62.79, 67.63 / 63.47, 69.82 / 63.59;
  replacing the shape channel: 45.16 / 53.63 / 50.08.
* An absolute bar (ART's vigilance instead of a record): a channel's raw score divided by a constant c joins the
  max: shape c 5 / 20 / 100 67.62 / 63.60, 70.04 / 64.36, 70.04 / 64.86; level c 5 69.16 / 64.44; trend c 20
  70.04 / 64.73.
* Shape records discounted when nothing else is new (of 117 false alarms 108 are shape records whose level / trend
  ratio is ~0; true first detections mostly have one above 0.2): shape ratio x ((c + min(nov, cap)) / (c + cap)),
  nov = the larger of the level and trend ratios: (c, cap) (1, 1) 63.34 / 65.24, (4, 1) 67.01 / 64.10, (1, 0.5)
  67.57 / 66.07, (4, 0.5) 70.75 / 64.80, (1, 0.3) 73.86 / 65.21 / 67.80, (0.5, 0.3) 72.37 / 65.62, (0.7, 0.3) 71.28 /
  65.34, (1.5, 0.3) 73.46 / 64.80, (2, 0.3) 72.59 / 64.67, (1, 0.2) 72.73 / 64.71, (0.5, 0.2) 74.23 / 65.08 / 68.01,
  (1, 0.1) 68.97 / 64.34. Never above B's 65.73 except (1, 0.5), which loses on A; the best all-file gains are one
  window each way (nyc_taxi window 1 caught, +1.8 raw; ec2_cpu_utilization_fe7f93 loses one, -1.6) plus a few
  false alarms fewer in the long files: bumpy, not kept.
* A committee of shape channels (windows 3-12, memories 300-700), their ratios combined by median / mean /
  geometric mean before the max: 62.45-65.40 all (A 66.9-70.0, B 61.8-64.2).
* Analog forecasting (sequence context, as HTM and CAD OSE use): z_t predicted by the median successor of the 10
  past 6-value contexts nearest to the current one (scikit-learn NearestNeighbors on the same history), the
  residual, or the residual over the neighbours' spread, as a fourth channel: memory 500 62.53 / 63.93, 54.58 /
  58.60; memory 4000 68.06 / 65.17, 65.86 / 64.63.
* Time-of-day context (sin / cos of the time of day, weight 0.25 / 0.5 / 1 in scaled units, appended to the level
  or the shape features): as a fourth channel 69.60 / 65.61 .. 70.04 / 65.73 (never a record the others missed);
  replacing the level channel 69.60 / 63.58, replacing the shape channel 63.37-67.23 / 65.12-66.39.
* How far 41 files can tell two detectors apart (``--perfile``, per-file raw scores, files resampled with
  replacement 2,000 times): ours minus ARTime -2.55 (95 % interval -11.87 .. +6.45), minus numenta -2.06 (-9.96 ..
  +5.02).
* The discount of unsupported shape records again, now with the third round's volatility channel (KNN on the log
  range of the last 24 scaled values + 1e-3, whole-history memory; alone 70.68 / 65.48 / 67.37) among the
  supporting channels. Written as: shape ratio x (d + (1 - d) x min(support / s, 1)), support = the largest other
  ratio. (c, cap) of the form above with the range channel: (1, 0.3) 73.63 / 67.06 / 69.20, (0.5, 0.2) 74.88 /
  66.93 / 69.73, (2, 0.3) 73.67 / 66.52, (1, 0.5) 66.29 / 65.70. Grid d 0.7-0.9 x s 0.15-0.35 (A / B / all):
  d 0.7: 74.32 / 66.69 / 69.45 (s 0.15), then 67.2-68.2 (s 0.2-0.3), 66.26 (s 0.35); d 0.75: A 69.3-74.5, B
  64.96-65.70 (fails B); d 0.8: s 0.15 74.32 / 66.31 / 69.21, 0.2 73.34 / 66.56 / 68.85, 0.25 73.85 / 66.52 /
  69.10, 0.3 72.97 / 67.05 / 69.20, 0.35 70.59 / 67.02 / 67.47; d 0.85: 72.60-73.67 / 66.31-66.65 / 68.57-69.11;
  d 0.9: 69.71-71.91 / 66.31-66.56 / 67.30-68.26. Every setting with d 0.8-0.85 beats the old default on both
  folds: a plateau, and d 0.8, s 0.25 is its middle. Per file (raw points, against the old default): nyc_taxi
  +1.8 (window 1 caught), cpu_utilization_asg_misconfiguration +0.7 and machine_temperature +0.7 (6 false alarms
  fewer each), ten more files one or two false alarms fewer; -0.1 to -0.3 on seven files. Seeds 1 / 2: 69.10 /
  69.18.
Result of the fifth round: the volatility channel (``volatility``, ``volatility_window=24``) and the discount
(``shape_discount=0.8``, ``shape_support=0.25``) became the default: 69.10 / 60.99 / 73.60 (A 73.85, B 66.52).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench import datasets
from bench.report import write_json

PROFILES = {"standard": (1.0, 0.11, 1.0), "reward_low_FP_rate": (1.0, 0.22, 1.0),
            "reward_low_FN_rate": (1.0, 0.11, 2.0)}


def _scaled_sigmoid(p: np.ndarray) -> np.ndarray:
    out = 2.0 / (1.0 + np.exp(5.0 * p)) - 1.0
    return np.where(p > 3.0, -1.0, out)


MAX_TP = float(_scaled_sigmoid(np.array([-1.0]))[0])


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (as strings, 'YYYY-mm-dd HH:MM:SS') and values of one NAB csv."""
    ts, vals = [], []
    with open(path) as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            ts.append(row[0])
            vals.append(float(row[1]))
    return np.array(ts), np.array(vals, dtype=np.float64)


def file_rows(ts: np.ndarray, windows: list[list[str]]):
    """Per-row (window id or -1, unit TP sweep, unit FP sweep) and probation length for one file."""
    n = len(ts)
    win = np.full(n, -1)
    tp_unit = np.zeros(n)
    fp_unit = np.full(n, -1.0)
    spans = []
    for k, (a, b) in enumerate(windows):
        a, b = a[:19], b[:19]
        idx = np.nonzero((ts >= a) & (ts <= b))[0]
        if len(idx) == 0:
            continue
        spans.append((int(idx[0]), int(idx[-1]), k))
    prev = None
    pos = 0
    for l, r, k in spans:
        if prev is None:
            fp_unit[pos:l] = -1.0
        else:
            pr, pw = prev
            i = np.arange(pos, l)
            fp_unit[pos:l] = _scaled_sigmoid(np.abs(pr - i) / (pw - 1)) if pw > 1 else -1.0
        width = r - l + 1
        i = np.arange(l, r + 1)
        tp_unit[l:r + 1] = _scaled_sigmoid(-(r - i + 1) / width) / MAX_TP
        win[l:r + 1] = k
        prev = (r, width)
        pos = r + 1
    if prev is not None:
        pr, pw = prev
        i = np.arange(pos, n)
        fp_unit[pos:n] = _scaled_sigmoid(np.abs(pr - i) / (pw - 1)) if pw > 1 else -1.0
    prob = int(min(math.floor(0.15 * n), 0.15 * 5000))
    return win, tp_unit, fp_unit, prob, len(spans)


def score_corpus(results: dict, windows: dict) -> dict:
    """{profile: (normalised score, threshold, raw)} for ``results`` = {relpath: (ts, scores)}."""
    pooled = []
    n_windows = 0
    for rel, (ts, sc) in results.items():
        win, tpu, fpu, prob, nw = file_rows(ts, windows.get(rel, []))
        n_windows += len(windows.get(rel, []))
        pooled.append((rel, win[prob:], tpu[prob:], fpu[prob:], np.asarray(sc)[prob:]))
    out = {}
    for prof, (a_tp, a_fp, a_fn) in PROFILES.items():
        ev_t, ev_d = [], []
        base = -a_fn * n_windows
        for fi, (rel, win, tpu, fpu, sc) in enumerate(pooled):
            outside = win < 0
            ev_t.append(sc[outside])
            ev_d.append(fpu[outside] * a_fp)
            for k in np.unique(win[~outside]):
                m = np.nonzero(win == k)[0]
                order = m[np.argsort(-sc[m], kind="stable")]
                best = -a_fn
                for j in order:
                    v = tpu[j] * a_tp
                    if v > best:
                        ev_t.append(np.array([sc[j]]))
                        ev_d.append(np.array([v - best]))
                        best = v
        t = np.concatenate(ev_t)
        d = np.concatenate(ev_d)
        order = np.argsort(-t, kind="stable")
        t, d = t[order], d[order]
        cum = base + np.cumsum(d)
        last = np.r_[t[1:] != t[:-1], True]   # last event at each distinct threshold
        cand_t, cand_s = t[last], cum[last]
        best_i = int(np.argmax(cand_s)) if len(cand_s) else 0
        raw = max(base, float(cand_s[best_i])) if len(cand_s) else base
        thr = float(cand_t[best_i]) if len(cand_s) and cand_s[best_i] > base else 1.1
        s_null = -a_fn * n_windows
        s_perf = a_tp * n_windows
        out[prof] = (100.0 * (raw - s_null) / (s_perf - s_null), thr, raw)
    return out


def published(data: Path, files: set[str], n_windows: int) -> dict:
    """Published detectors' normalised scores on ``files`` at their published thresholds."""
    res = {}
    for det_dir in sorted((data / "results").iterdir()):
        if not det_dir.is_dir():
            continue
        row = {}
        for prof, (a_tp, a_fp, a_fn) in PROFILES.items():
            per_file = published_per_file(data, det_dir.name, prof)
            if per_file:
                tot = sum(score for f, score in per_file.items() if f in files)
                row[prof] = 100.0 * (tot + a_fn * n_windows) / (a_tp * n_windows + a_fn * n_windows)
        res[det_dir.name] = row
    return res


def published_per_file(data: Path, detector: str, profile: str = "standard") -> dict[str, float]:
    """{relpath: raw score} of one published detector at its published threshold."""
    p = data / "results" / detector / f"{detector}_{profile}_scores.csv"
    if not p.exists():
        return {}
    with open(p) as fh:
        return {r["File"]: float(r["Score"]) for r in csv.DictReader(fh)}


def bootstrap_gap(ours: dict[str, float], theirs: dict[str, float], n_windows: dict[str, int], rounds: int = 2000,
                  seed: int = 0) -> tuple[float, float, float]:
    """Standard-profile normalised score of ``ours`` minus ``theirs`` (per-file raw scores, the same files) and the
    2.5 / 97.5 % points of that difference when the files are resampled with replacement: how far the copy's few
    files can tell two detectors apart."""
    files = sorted(ours)
    diff = np.array([ours[f] - theirs[f] for f in files])
    wins = np.array([n_windows.get(f, 0) for f in files], dtype=np.float64)
    # standard profile: null = -windows, perfect = +windows, so the normalised difference is 100 * d / (2 * windows)
    gap = 100.0 * diff.sum() / (2.0 * wins.sum())
    pick = np.random.default_rng(seed).integers(0, len(files), size=(rounds, len(files)))
    resampled = 100.0 * diff[pick].sum(axis=1) / (2.0 * np.maximum(wins[pick].sum(axis=1), 1.0))
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    return float(gap), float(lo), float(hi)


def _run_one(args):
    path, config = args
    from aiops.detect.streaming import StreamingDetector
    ts, vals = load_file(path)
    t0 = time.perf_counter()
    sc = StreamingDetector(**config).score_series(ts, vals)
    return ts, sc, time.perf_counter() - t0


FOLDS = {"A": ("artificialNoAnomaly", "artificialWithAnomaly", "realKnownCause"),
         "B": ("realAWSCloudwatch", "realAdExchange")}
CV_GRID = {"recent": (300, 500, 700), "suppress": (50, 75, 100), "escalation": (0.1, 0.2, 0.3, 1.0),
           "novelty": (False, True), "volatility": (False, True), "shape_discount": (1.0, 0.8)}


def _record_one(args):
    """Run the detector over one file and return (timestamps, per-point channel raw scores or None, seconds)."""
    path, config = args
    from aiops.detect.streaming import StreamingDetector
    ts, vals = load_file(path)
    det = StreamingDetector(**config)
    raws: list = [None] * len(vals)
    post = det._post

    def recording_post(i, channel_raws):
        raws[i] = list(channel_raws)
        return post(i, channel_raws)

    det._post = recording_post
    t0 = time.perf_counter()
    det.score_series(ts, vals)
    return ts, raws, time.perf_counter() - t0


def replay(raws: list, config: dict, recorded: dict | None = None) -> np.ndarray:
    """Scores from recorded channel raws with the post-processing of ``config`` (the models' settings must be the
    ones the raws were recorded with, ``recorded``; channels ``config`` turns off are dropped): the detector's own
    ``_post``, so identical to a full run."""
    from aiops.detect.streaming import StreamingConfig, StreamingDetector
    det = StreamingDetector(**config)
    have = StreamingConfig(**(recorded if recorded is not None else config)).channels
    pick = [have.index(name) for name in det.config.channels]
    out = np.zeros(len(raws))
    for i, r in enumerate(raws):
        if r is not None:
            out[i] = det._post(i, [r[k] for k in pick])
    return out


def cross_validate(recorded: dict, windows: dict, base: dict) -> dict:
    """Every grid setting's standard score on each fold and on all files; the best on each fold checked on the
    other. ``recorded`` = {relpath: (timestamps, raws)}; ``base`` = the model settings the raws came from."""
    keys = list(CV_GRID)
    table = []
    for values in itertools.product(*CV_GRID.values()):
        config = {**base, **dict(zip(keys, values))}
        results = {r: (ts, replay(raws, config, base)) for r, (ts, raws) in recorded.items()}
        row = {"config": dict(zip(keys, values))}
        for fold, cats in (*FOLDS.items(), ("all", None)):
            part = {r: v for r, v in results.items() if cats is None or r.split("/")[0] in cats}
            row[fold] = round(score_corpus(part, {r: windows.get(r, []) for r in part})["standard"][0], 2)
        table.append(row)
        print(f"  {row['config']}  A {row['A']:6.2f}  B {row['B']:6.2f}  all {row['all']:6.2f}", flush=True)
    checks = {}
    for tune, test in (("A", "B"), ("B", "A")):
        best = max(table, key=lambda row: row[tune])
        checks[f"tuned on {tune}"] = {"config": best["config"], tune: best[tune], f"held-out {test}": best[test],
                                      "all": best["all"]}
    return {"grid": table, "checks": checks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(datasets.path("nab")))
    ap.add_argument("--set", nargs="*", default=[], help="detector config overrides key=value (json values)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--published", action="store_true")
    ap.add_argument("--perfile", action="store_true")
    ap.add_argument("--cv", action="store_true", help="cross-validate the post-processing grid across categories")
    ap.add_argument("--out", type=Path, default=None, help="with --cv: write the grid and checks here as JSON")
    a = ap.parse_args()
    data = Path(a.data)
    config = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    windows = json.load(open(data / "labels" / "combined_windows.json"))
    paths = sorted((data / "data").glob("*/*.csv"))
    rels = [str(p.relative_to(data / "data")) for p in paths]
    if a.cv:
        with ProcessPoolExecutor(a.workers) as pool:
            outs = list(pool.map(_record_one, [(p, config) for p in paths]))
        report = cross_validate({r: (o[0], o[1]) for r, o in zip(rels, outs)}, windows, config)
        for name, check in report["checks"].items():
            print(f"{name}: {check}")
        if a.out:
            write_json(a.out, report)
        return
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        outs = list(pool.map(_run_one, [(p, config) for p in paths]))
    wall = time.perf_counter() - t0
    results = {r: (o[0], o[1]) for r, o in zip(rels, outs)}
    n_pts = sum(len(o[0]) for o in outs)
    cpu = sum(o[2] for o in outs)
    scores = score_corpus(results, windows)
    print(f"config={config} points={n_pts} wall={wall:.1f}s detector={1000 * cpu / n_pts:.2f} s/1000pts (single core)")
    for prof, (s, thr, raw) in scores.items():
        print(f"  {prof:20s} {s:6.2f}  thr={thr:.4f} raw={raw:.2f}")
    if a.perfile:
        per_file = {name: published_per_file(data, name) for name in ("ARTime", "numenta")}
        for prof in ("standard",):
            thr = scores[prof][1]
            ours = {}
            for r in rels:
                # the file's raw score at the global threshold
                win, tpu, fpu, prob, nw = file_rows(results[r][0], windows.get(r, []))
                sc = np.asarray(results[r][1])[prob:]
                det = sc >= thr
                w, tp_, fp_ = win[prob:], tpu[prob:], fpu[prob:]
                tot = float((fp_[det & (w < 0)] * 0.11).sum())
                for k in range(len(windows.get(r, []))):
                    hit = det & (w == k)
                    tot += float(tp_[hit].max()) if hit.any() else -1.0
                ours[r] = tot
                pub = "".join(f" {name} {per_file[name].get(r, float('nan')):7.3f}" for name in per_file)
                print(f"    {r:60s} {tot:7.3f}  nwin={len(windows.get(r, []))} fp={int((det & (w < 0)).sum())}{pub}")
            n_win = {r: len(windows.get(r, [])) for r in rels}
            for name, theirs in per_file.items():
                if set(rels) <= set(theirs):
                    gap, lo, hi = bootstrap_gap(ours, theirs, n_win)
                    print(f"  {prof} minus {name}: {gap:+.2f} "
                          f"(95 % interval over resampled files {lo:+.2f} .. {hi:+.2f})")
    if a.published:
        n_windows = sum(len(v) for v in windows.values())
        for det, row in published(data, set(rels), n_windows).items():
            print(f"  published {det:20s} " + " ".join(f"{row.get(p, float('nan')):6.2f}" for p in PROFILES))


if __name__ == "__main__":
    main()
