#Requires -Version 5.1
<#
.SYNOPSIS
    Intune Win32 app detection script for Airlock: "installed" (exit 0 with output) when the airlockd
    service exists, airlockd.exe reports at least $MinVersion and, if $RequireEnrollment, the managed
    enrollment is in place. Anything else: not installed (exit 1, no output), and Intune runs
    install.ps1.
#>
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Set to the version this app deploys.
$MinVersion = [version]'0.1.0'
# Set to $false for an app that ships no enrollment.toml.
$RequireEnrollment = $true

$exe = Join-Path $env:ProgramFiles 'Airlock\airlockd.exe'
$enrollment = Join-Path $env:ProgramData 'Airlock\Config\enrollment.toml'

if ($null -eq (Get-Service -Name 'airlockd' -ErrorAction SilentlyContinue)) {
    exit 1
}
if (-not (Test-Path -LiteralPath $exe)) {
    exit 1
}
# "airlockd 0.1.0"
$reported = (& $exe --version) -join ' '
if ($reported -notmatch '(\d+\.\d+\.\d+)') {
    exit 1
}
$installed = [version]$Matches[1]
if ($installed -lt $MinVersion) {
    exit 1
}
if ($RequireEnrollment -and -not (Test-Path -LiteralPath $enrollment)) {
    exit 1
}
Write-Output "Airlock $installed installed"
exit 0
