"""Reports for performance staff: CitiStat's figures and the open-data export (read-only, set-based SQL)."""
