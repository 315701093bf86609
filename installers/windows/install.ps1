#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
  Installs, upgrades, rolls back or removes a PlantBridge Windows service (agent or hub).

.DESCRIPTION
  Run from the unpacked release folder (plantbridge-<app>-<version>-win-x64), in an elevated PowerShell.

  Program files:  %ProgramFiles%\PlantBridge\<app>\  plantbridge-<app>.exe, the previous .exe, the WinSW
                  wrapper plantbridge-<app>-service.exe (checked against winsw.json) with its XML and
                  .exe.config.
  Data:           %ProgramData%\PlantBridge\<app>\   config\<app>.yaml, state\ (outbox, PKI), logs\
                  Readable only by SYSTEM, Administrators and the service (its service SID
                  NT SERVICE\plantbridge-<app> when it runs as LocalService, else the given account).

  install, upgrade and rollback never touch config\ and state\. uninstall keeps them unless -Purge.

.EXAMPLE
  .\install.ps1 install
.EXAMPLE
  .\install.ps1 upgrade
.EXAMPLE
  .\install.ps1 rollback
.EXAMPLE
  .\install.ps1 install -ServiceAccount 'PLANT\gmsa-plantbridge$'
.EXAMPLE
  .\install.ps1 uninstall -Purge
#>
[CmdletBinding()]
param(
  [Parameter(Position = 0)]
  [ValidateSet('install', 'upgrade', 'rollback', 'uninstall', 'status')]
  [string]$Action = 'install',
  [ValidateSet('agent', 'hub')]
  [string]$App,
  [string]$InstallDir,
  [string]$DataDir,
  # LocalService (default), or a domain / local account or a gMSA (name ending in $). The account needs
  # the "Log on as a service" right.
  [string]$ServiceAccount = 'NT AUTHORITY\LocalService',
  # password of -ServiceAccount; not needed for LocalService and gMSAs
  [pscredential]$Credential,
  [switch]$Purge,
  [switch]$NoStart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not $App) {
  if (Test-Path (Join-Path $PSScriptRoot 'plantbridge-hub.exe')) { $App = 'hub' } else { $App = 'agent' }
}
$Name = "plantbridge-$App"
if (-not $InstallDir) { $InstallDir = Join-Path $env:ProgramFiles "PlantBridge\$App" }
if (-not $DataDir) { $DataDir = Join-Path $env:ProgramData "PlantBridge\$App" }
$ConfigDir = Join-Path $DataDir 'config'
$StateDir = Join-Path $DataDir 'state'
$LogDir = Join-Path $DataDir 'logs'
$Config = Join-Path $ConfigDir "$App.yaml"
$Exe = Join-Path $InstallDir "$Name.exe"
$Previous = Join-Path $InstallDir "$Name.previous.exe"
$Wrapper = Join-Path $InstallDir "$Name-service.exe"
$WrapperXml = Join-Path $InstallDir "$Name-service.xml"
$NewExe = Join-Path $PSScriptRoot "$Name.exe"
$BuiltIn = @('NT AUTHORITY\LocalService', 'NT AUTHORITY\NetworkService')

function Say([string]$Text) { Write-Host $Text }
function Did([string]$Text) { Write-Host "  + $Text" }

function Invoke-Captured {
  # Runs a native program; returns its exit code and its output (stdout and stderr) as text, never throws.
  # Windows PowerShell 5.1 turns every stderr line of a redirected native program into an error record,
  # which $ErrorActionPreference = 'Stop' makes a terminating error even when the program succeeds (a
  # warning on stderr would abort the install): so 'Continue' in here, and the records become plain text.
  param([string]$Program, [string[]]$Arguments)
  $ErrorActionPreference = 'Continue'
  $out = & $Program @Arguments 2>&1 | ForEach-Object {
    if ($_ -is [System.Management.Automation.ErrorRecord]) { $_.Exception.Message } else { [string]$_ }
  }
  return [pscustomobject]@{ Code = $LASTEXITCODE; Output = @($out) }
}

function Invoke-Native {
  # runs a program, throws with its output when it fails
  param([string]$Program, [string[]]$Arguments)
  $r = Invoke-Captured $Program $Arguments
  if ($r.Code -ne 0) { throw "$Program $($Arguments -join ' ') failed ($($r.Code)): $($r.Output -join "`n")" }
  return $r.Output
}

function Get-ExeVersion([string]$Path) {
  if (-not (Test-Path $Path)) { return 'none' }
  $r = Invoke-Captured $Path @('--version')
  if ($r.Code -ne 0) { return 'unknown' }
  return [string]($r.Output | Select-Object -First 1)
}

function Test-Wrapper {
  $src = Join-Path $PSScriptRoot "$Name-service.exe"
  if (-not (Test-Path $src)) { throw "missing ${src}: use the complete release folder" }
  $pin = Get-Content -Raw (Join-Path $PSScriptRoot 'winsw.json') | ConvertFrom-Json
  $hash = (Get-FileHash -Algorithm SHA256 -Path $src).Hash.ToLowerInvariant()
  if ($hash -ne ([string]$pin.sha256).ToLowerInvariant()) {
    throw "${src} has SHA-256 $hash, expected $($pin.sha256) (WinSW $($pin.version) from npm $($pin.package)@$($pin.packageVersion)): not installing it"
  }
  Did "service wrapper WinSW $($pin.version) verified (SHA-256 $hash)"
}

function Test-NewExe {
  if (-not (Test-Path $NewExe)) { throw "missing $NewExe" }
  $script:NewVersion = Get-ExeVersion $NewExe
  if ($script:NewVersion -eq 'unknown') { throw "$NewExe does not run on this server (Windows 10 / Server 2016 or newer, x64)" }
}

function Test-ConfigWith([string]$Binary) {
  if (-not (Test-Path $Config)) { return $true }
  $r = Invoke-Captured $Binary @('check-config', '--config', $Config)
  if ($r.Code -ne 0) { Write-Warning ($r.Output -join "`n"); return $false }
  Did "config $Config is valid for $(Get-ExeVersion $Binary)"
  return $true
}

function Get-Svc { Get-Service -Name $Name -ErrorAction SilentlyContinue }

function Stop-Svc {
  $svc = Get-Svc
  if ($svc -and $svc.Status -ne 'Stopped') {
    Stop-Service -Name $Name
    $svc.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(90))
    Did "stopped $Name"
  }
}

function Start-Svc {
  if ($NoStart) { Did 'not started (-NoStart)'; return }
  if (-not (Test-Path $Config)) {
    Say ''
    Say "Next: write $Config (start from $ConfigDir\$App.example.yaml),"
    Say "      check it with: & '$Exe' check-config --config '$Config'"
    Say "      then: Start-Service $Name"
    return
  }
  Start-Service -Name $Name
  Start-Sleep -Seconds 3
  $svc = Get-Svc
  if ($svc.Status -eq 'Running') {
    Say "$Name is running. Logs: $LogDir"
  } else {
    Say "$Name is NOT running ($($svc.Status)). See $LogDir and the Windows Application event log."
    if (Test-Path $Previous) { Say "To go back to $(Get-ExeVersion $Previous): .\install.ps1 rollback -App $App" }
    exit 2
  }
}

function Write-WrapperXml {
  $xml = Get-Content -Raw (Join-Path $PSScriptRoot "$Name-service.xml")
  if ($BuiltIn -notcontains $ServiceAccount) {
    # the account is set through the service manager below, so no password lands in the XML
    $xml = [regex]::Replace($xml, '(?s)\s*<serviceaccount>.*?</serviceaccount>', '')
  }
  Set-Content -Path $WrapperXml -Value $xml -Encoding UTF8
  Did "service definition $WrapperXml"
}

function Set-ServiceAccount {
  if ($BuiltIn -contains $ServiceAccount) {
    # a service SID lets the ACLs name this service alone rather than every LocalService service
    Invoke-Native 'sc.exe' @('sidtype', $Name, 'unrestricted') | Out-Null
    Did "service SID NT SERVICE\$Name enabled; runs as $ServiceAccount"
    return
  }
  $arguments = @{ StartName = $ServiceAccount }
  if ($Credential) { $arguments.StartPassword = $Credential.GetNetworkCredential().Password }
  $result = Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'" | Invoke-CimMethod -MethodName Change -Arguments $arguments
  if ($result.ReturnValue -ne 0) { throw "setting the service account to $ServiceAccount failed (Win32_Service.Change $($result.ReturnValue))" }
  Did "runs as $ServiceAccount"
}

function Set-DataAcl {
  $account = $ServiceAccount
  if ($BuiltIn -contains $ServiceAccount) { $account = "NT SERVICE\$Name" }
  foreach ($dir in @($DataDir, $ConfigDir, $StateDir, $LogDir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
  # no inherited entries (ProgramData lets Users read): SYSTEM and Administrators only ...
  Invoke-Native 'icacls.exe' @($DataDir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F', '/Q') | Out-Null
  # ... plus the service: reads its config, writes its state and logs
  Invoke-Native 'icacls.exe' @($ConfigDir, '/grant:r', "${account}:(OI)(CI)RX", '/Q') | Out-Null
  Invoke-Native 'icacls.exe' @($StateDir, '/grant:r', "${account}:(OI)(CI)M", '/Q') | Out-Null
  Invoke-Native 'icacls.exe' @($LogDir, '/grant:r', "${account}:(OI)(CI)M", '/Q') | Out-Null
  Did "ACLs: $DataDir is readable by SYSTEM, Administrators and $account only (config read, state and logs modify)"
  $example = Join-Path $PSScriptRoot "$App.example.yaml"
  if (Test-Path $example) {
    # the example names paths under the default data folder; -DataDir moves them
    $text = (Get-Content -Raw $example).Replace("C:\ProgramData\PlantBridge\$App", $DataDir)
    Set-Content -Path (Join-Path $ConfigDir "$App.example.yaml") -Value $text -Encoding UTF8
    Did "example config $ConfigDir\$App.example.yaml"
  }
}

function Install-Files {
  New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
  if (Test-Path $Exe) {
    Copy-Item -Force $Exe $Previous
    Did "kept the previous binary ($(Get-ExeVersion $Previous)) as $Previous"
  }
  Copy-Item -Force $NewExe $Exe
  Did "installed $Exe ($script:NewVersion)"
  Copy-Item -Force (Join-Path $PSScriptRoot "$Name-service.exe") $Wrapper
  # WinSW 1.x is a .NET Framework 2.0 program: this lets it run on the .NET 4.x that Windows ships
  Set-Content -Path "$Wrapper.config" -Encoding UTF8 -Value @'
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <startup>
    <supportedRuntime version="v4.0" />
    <supportedRuntime version="v2.0.50727" />
  </startup>
</configuration>
'@
  Write-WrapperXml
}

function Set-StartMode {
  # delayed automatic start (after the network and the services Windows needs first); not a WinSW 1.x setting
  Invoke-Native 'sc.exe' @('config', $Name, 'start=', 'delayed-auto') | Out-Null
  Did 'automatic start (delayed)'
}

switch ($Action) {
  'install' {
    if (Get-Svc) { Say "$Name is already installed: upgrading."; & $PSCommandPath upgrade -App $App -InstallDir $InstallDir -DataDir $DataDir -NoStart:$NoStart; exit $LASTEXITCODE }
    Test-NewExe
    Test-Wrapper
    Say "install: $Name $script:NewVersion"
    Install-Files
    Invoke-Native $Wrapper @('install') | Out-Null
    Did "service $Name registered (restarts on failure after 10 s, 30 s, 2 min)"
    Set-StartMode
    Set-ServiceAccount
    Set-DataAcl
    Start-Svc
    Say "Done. Config: $Config; data: $StateDir (upgrade, rollback and uninstall keep both)."
  }
  'upgrade' {
    if (-not (Test-Path $Exe)) { throw "$Name is not installed in $InstallDir; use: .\install.ps1 install" }
    Test-NewExe
    Test-Wrapper
    if (-not (Test-ConfigWith $NewExe)) { throw "the new version rejects ${Config}: nothing was changed" }
    Say "upgrade: $Name $(Get-ExeVersion $Exe) -> $script:NewVersion"
    Stop-Svc
    Install-Files
    # WinSW reads the XML at every start; the registration (account, failure actions) stays as installed
    Set-StartMode
    Set-DataAcl
    Start-Svc
    Say "Done. Config and data were kept: $Config, $StateDir."
  }
  'rollback' {
    if (-not (Test-Path $Previous)) { throw "no previous binary at $Previous (possible once, after an upgrade)" }
    Say "rollback: $Name $(Get-ExeVersion $Exe) -> $(Get-ExeVersion $Previous)"
    Stop-Svc
    $swap = "$Exe.rollback"
    Move-Item -Force $Exe $swap
    Move-Item -Force $Previous $Exe
    Move-Item -Force $swap $Previous
    Did "$Exe is now $(Get-ExeVersion $Exe); $(Get-ExeVersion $Previous) kept as $Previous"
    Start-Svc
    Say "Done. Config and data were kept: $Config, $StateDir."
  }
  'uninstall' {
    Say "uninstall: $Name"
    if (Get-Svc) {
      Stop-Svc
      Invoke-Native $Wrapper @('uninstall') | Out-Null
      Did "service $Name removed"
    }
    if (Test-Path $InstallDir) { Remove-Item -Recurse -Force $InstallDir; Did "removed $InstallDir" }
    if ($Purge) {
      if (Test-Path $DataDir) { Remove-Item -Recurse -Force $DataDir }
      Did "purged $DataDir (config, state, logs)"
    } else {
      Say "Kept $DataDir (config, state, logs); delete it with: .\install.ps1 uninstall -App $App -Purge"
    }
  }
  'status' {
    $svc = Get-Svc
    Say "${Name}: $(Get-ExeVersion $Exe) at $Exe"
    Say "previous: $(Get-ExeVersion $Previous)"
    Say "service: $(if ($svc) { $svc.Status } else { 'not installed' })"
    Say "config: $Config $(if (Test-Path $Config) { 'present' } else { 'missing' })"
    Say "data: $StateDir"
  }
}
