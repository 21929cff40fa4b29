"""Counselling records: how the patient of a fill was counselled (or declined), before it is handed out."""
