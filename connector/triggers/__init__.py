"""The triggers wing: polling ledgers (``polling``), the event queue and its
dispatcher (``dispatch``), the webhook receiver (``receiver``) and webhook
subscriptions (``subscriptions``)."""

from connector._compat import moved_attributes

_POLLING = (
    "Poller",
    "PollResult",
    "ledger_name",
    "check_options",
    "reset_ledger",
    "PAGE_SIZE",
    "DEFAULT_WINDOW_DAYS",
)
_DISPATCH = ("Dispatcher", "RunFailed", "claim", "finish", "requeue_interrupted", "workflow_handler")

__getattr__ = moved_attributes(
    __name__,
    {
        **{name: "connector.triggers.polling" for name in _POLLING},
        **{name: "connector.triggers.dispatch" for name in _DISPATCH},
    },
)
