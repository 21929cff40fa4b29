"""Prescriptions sent by a site's pharmacy system (FHIR, NCPDP SCRIPT), read into prescriptions."""
