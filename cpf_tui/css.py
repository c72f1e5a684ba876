"""The app stylesheet (Textual CSS). Kept in Python so it ships without package data;
widgets carry their own DEFAULT_CSS."""

APP_CSS = """

Screen { background: $background; }

/* Workflows */
#wf-body { height: 1fr; }
#wf-tree {
    width: auto; min-width: 18; max-width: 36%; padding-right: 1;
    border-right: tall $panel; background: $surface;
}
/* Under 70 columns the file tree sits above the preview, as tall as it needs (up to 40%). */
Screen.-tiny #wf-body { layout: vertical; }
Screen.-tiny #wf-tree {
    width: 100%; max-width: 100%; height: auto; max-height: 40%;
    border-right: none; border-bottom: tall $panel;
}
#wf-preview { width: 1fr; padding: 0 1; }
#wf-title { height: auto; max-height: 4; margin-bottom: 0; }
#wf-tabs { height: 1fr; }
#wf-tabs TabPane { padding: 0; }

/* Runs */
#runs-filters { height: 1; background: $panel; }
#status-filter { width: 20; }
#workflow-filter { width: 24; margin-left: 1; }
#runs-count { width: 1fr; padding: 0 1; color: $text-muted; }
#runs-table { height: 1fr; }

/* Waiting */
#waiting-info { height: 1; background: $panel; }
#waiting-table { height: 1fr; }

/* Run view */
#run-head { height: 2; padding: 0 1; background: $panel; }
#run-body { height: 1fr; }
#timeline {
    width: auto; min-width: 18; max-width: 40%; overflow-x: hidden;
    border-right: tall $panel; background: $surface; padding-right: 1;
}
#run-tabs { width: 1fr; }
#run-tabs TabPane { padding: 0; }
#run-tabs VerticalScroll { padding: 0 1; }

/* Checkpoints (here, not in the screen's CSS: a screen with its own CSS makes Textual
   reparse every stylesheet when it is first shown) */
#cp-bar { height: 1; background: $panel; }
#cp-account { width: 26; }
#cp-info { width: 1fr; padding: 0 1; color: $text-muted; }
#cp-workflows { height: 40%; min-height: 5; }
#cp-lower { height: 1fr; border-top: tall $panel; }
#cp-checkpoints { width: 46; border-right: tall $panel; }
CheckpointsScreen.-wide #cp-checkpoints { width: 45%; }
#cp-detail { width: 1fr; padding: 0 1; }

/* Forms (start and answer) */
#start-body { height: 1fr; padding: 0 1; }
#start-head { height: auto; margin-bottom: 1; }
#form-slot { height: 1fr; }
#inputs-form, #answer-form { height: 1fr; }
.form-buttons { height: 1; align-horizontal: right; margin-top: 1; }
.form-buttons Button { margin-left: 2; }
.command-hint { width: 1fr; height: 1; }
Screen.-narrow .command-hint, Screen.-tiny .command-hint { display: none; }

/* Answer */
#answer-head { height: 1; padding: 0 1; background: $panel; }
#answer-context { height: 40%; min-height: 6; }
#answer-prompt { width: 1fr; border: round $primary 50%; padding: 0 1; }
#answer-prompt Markdown { margin: 0; padding: 0; }
#answer-log { width: 1fr; border: round $panel-lighten-2; }
#answer-form-area { height: 1fr; padding: 0 1; }
/* Under 70 columns the prompt keeps the full width and the form most of the height; the
   step's output stays in the run view (a). */
Screen.-tiny #answer-log { display: none; }
Screen.-tiny #answer-context { height: 30%; min-height: 4; }
"""
