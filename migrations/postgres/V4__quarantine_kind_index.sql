-- Every batch looks up the faults quarantined for time or crashes (to skip
-- them); ignored machine mail grows without bound beside them, so the
-- lookup goes by kind, not by scanning the whole table.
CREATE INDEX quarantine_kind ON quarantine(kind);
