"""Import tasks: ``GET /v2/images/{id}/tasks`` (Image API 2.12).

Each accepted ``POST /v2/images/{id}/import`` records a task of type
``api_image_import``, as Glance does: ``processing`` while the import
runs, then ``success`` (``result`` names the image) or ``failure`` (with
its ``message``). ``input`` holds the image id, the import request as the
client sent it and the stores (``backend``); ``request_id`` is the
``x-openstack-request-id`` of the import request, ``owner`` and
``user_id`` the caller's project and user. The task also records, never
shown, its *holder*: the process running it (:func:`imgmw.holders.holder_id`),
by which recovery tells a copy whose process died
(:func:`imgmw.app.copier.recover_copies`). A finished task expires
:data:`TIME_TO_LIVE` after it ends (Glance's ``task_time_to_live``,
48 hours) and is then no longer listed; a deleted image lists none.

The listing needs ``get_image`` on the image (404 otherwise, as Glance).
"""

import datetime
import json
import logging
import typing

from imgmw.app import images
from imgmw.app import registry as registry_mod
from imgmw import holders

LOG = logging.getLogger(__name__)

TASK_TYPE = 'api_image_import'

#: How long a finished task stays listed.
TIME_TO_LIVE = datetime.timedelta(hours=48)

#: ``environ`` key of oslo.middleware's request id.
REQUEST_ID = 'openstack.request_id'


def start(registry, environ: dict, context, image_id: str,
          request: typing.Mapping, store_ids: typing.Sequence[str],
          task_id: typing.Optional[str] = None) -> typing.Optional[str]:
    """Record the task of an accepted import; returns its id.

    ``task_id`` is the id to give it (a copy's, which names it in the
    image's lock); else a new one. The task's holder is this process.

    A registry that fails here does not fail the import: the task is then
    simply not listed (logged).
    """
    chosen = {} if task_id is None else {'id': task_id}
    try:
        task = registry.create_task({
            **chosen, 'image_id': image_id, 'type': TASK_TYPE,
            'status': 'processing',
            'owner': context.project_id, 'user_id': context.user_id,
            'request_id': environ.get(REQUEST_ID),
            'holder': holders.holder_id(),
            'input': json.dumps({'image_id': image_id,
                                 'import_req': request,
                                 'backend': list(store_ids)})})
    except registry_mod.RegistryUnavailable:
        LOG.error('Image %s: could not record the import task', image_id)
        return None
    return task['id']


def finish(registry, task_id: typing.Optional[str], image_id: str,
           error: typing.Optional[BaseException] = None) -> None:
    """Mark the task ``success``, or ``failure`` with ``error``'s message.

    Never raises: the import's outcome is in the image already.
    """
    if task_id is None:
        return
    values = {'expires_at': registry_mod.utcnow() + TIME_TO_LIVE}
    if error is None:
        values.update(status='success',
                      result=json.dumps({'image_id': image_id}))
    else:
        values.update(status='failure',
                      message='%s: %s' % (type(error).__name__, error))
    try:
        registry.update_task(task_id, values)
    except Exception:
        LOG.exception('Image %s: could not record the end of task %s',
                      image_id, task_id)


def view(task: typing.Mapping) -> dict:
    """Glance's JSON of a task."""
    return {
        'id': task['id'], 'type': task['type'], 'status': task['status'],
        'owner': task['owner'], 'user_id': task['user_id'],
        'request_id': task['request_id'], 'image_id': task['image_id'],
        'input': json.loads(task['input']),
        'result': (json.loads(task['result'])
                   if task['result'] is not None else None),
        'message': task['message'],
        'created_at': images.timestamp(task['created_at']),
        'updated_at': images.timestamp(task['updated_at']),
        'expires_at': images.timestamp(task['expires_at']),
        'deleted_at': None, 'deleted': False}
