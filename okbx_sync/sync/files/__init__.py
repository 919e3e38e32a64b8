"""Files travel with the route (issue 15): Okdesk files to the task, the task's files back.

route.py     what a route gives the files planner (its rules, its Drive folder) and the files' words
plan.py      which files travel now: a pure function of the snapshot and the state store
to_task.py   the writes toward Bitrix24: a Drive copy, attached to the task, on a forwarded comment,
             in the task chat (new card), and the note for a file over the cap
to_issue.py  the writes toward Okdesk: one comment carrying the task's files (multipart), and what
             okbx records about the task's files it dealt with
transfer.py  streaming between the systems through a spool file (mode 600, gone afterwards)
reads.py     the reads planning needs: the task's files at completion and after it
"""
