"""dmtl.study: the ablation (variants x seeds), its results file, statistics, report and plots."""
