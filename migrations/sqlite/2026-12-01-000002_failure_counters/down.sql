DROP TABLE failure_counters;
