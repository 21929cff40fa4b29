"""Everything a request may need, built once per application from the config."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

from aiohttp import web

from server.compliance.checks import Compliance
from server.config import Config
from server.consultations.recordings import RecordingIntake
from server.consultations.service import ConsultationService
from server.consultations.signalling import SignallingRelay
from server.counselling.service import CounsellingService
from server.data_entry.originals import OriginalIntake
from server.data_entry.service import DataEntryService
from server.db.engine import Database
from server.directory import Directory
from server.fills.intake import MediaIntake
from server.fills.lifecycle import FillService
from server.fills.queries import FillQueries
from server.media.serving import MediaAccess
from server.media.store import MediaStore
from server.operations.metrics import Metrics
from server.operations.storage import DataPaths
from server.prescriptions import Prescriptions
from server.realtime.hub import Hub
from server.security.access_log import AccessLog
from server.security.auth import Auth
from server.security.principal import Principal


@dataclass
class Services:
    config: Config
    db: Database
    auth: Auth
    directory: Directory
    prescriptions: Prescriptions
    data_entry: DataEntryService
    fills: FillService
    queries: FillQueries
    hub: Hub
    store: MediaStore
    media: MediaAccess[Principal]
    media_executor: concurrent.futures.Executor
    metrics: Metrics
    intake: MediaIntake
    originals: OriginalIntake
    consultations: ConsultationService
    recordings: RecordingIntake
    signalling: SignallingRelay
    storage: DataPaths
    access_log: AccessLog
    compliance: Compliance
    counselling: CounsellingService


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
