"""The quick start a new user runs first must tell the whole story and check itself."""

from typer.testing import CliRunner

from okbx_sync.cli import app


def test_demo_plays_the_whole_story_and_reports_success():
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "The story played out as expected." in result.output
    assert "CreateTask" in result.output and "ReturnIssue" in result.output
    assert "UploadFile" in result.output and "ForwardCommentWithFiles" in result.output  # issue 15
    assert "PostFilesBack" in result.output and "monthly-report-fixed.csv" in result.output
    assert "The billing story played out as expected." in result.output  # issue 10
    assert "CreateInvoice" in result.output and "HoldIssue" in result.output and "ReleaseIssue" in result.output
